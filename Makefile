# Everything a fresh clone needs: `make run` serves, `make test` checks. CI runs `make test`.
# CPython 3.12 when the machine has one (eager tasks make each event-handler run several times
# cheaper: see bench/README.md), else python3 (3.11 or newer). `make PYTHON=python3.13 ...` to choose.
PYTHON ?= $(shell for candidate in python3.12 $$(pyenv root 2>/dev/null)/versions/3.12*/bin/python3 python3; do \
	"$$candidate" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null && echo "$$candidate" && break; done)
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PROTOS := $(wildcard protos/*/v1/*.proto)
EXAMPLE_PROTOS := $(wildcard examples/*/v1/*.proto)
GENERATED := protos/.generated
PYTEST_ARGS ?=

.PHONY: install proto node browser proxy web lint breaking typecheck pytest test run bench mutation clean

install: $(VENV)/.installed $(GENERATED) node_modules/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# The distribution was called `rill` before `rill-grpc`: a venv made then has both installed.
	$(PY) -m pip uninstall --quiet --yes rill 2>/dev/null || true
	# grpc-stubs (archived) gave way to typeshed's types-grpcio, which installs into the same grpc-stubs/.
	$(PY) -m pip uninstall --quiet --yes grpc-stubs 2>/dev/null || true
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# Python code for every contract in protos/, importable as protos.<package>.v1.<name>_pb2, with typed
# stubs (mypy-protobuf) for the messages (_pb2.pyi) and the gRPC stubs and servicers (_pb2_grpc.pyi).
$(GENERATED): $(PROTOS) $(EXAMPLE_PROTOS) $(VENV)/.installed
	find protos examples -name '*_pb2*.py*' -delete
	$(PY) -m grpc_tools.protoc -Iprotos=protos -Ithird_party/googleapis \
		--plugin=protoc-gen-mypy=$(BIN)/protoc-gen-mypy --plugin=protoc-gen-mypy_grpc=$(BIN)/protoc-gen-mypy_grpc \
		--python_out=. --mypy_out=. --grpc_python_out=. --mypy_grpc_out=. $(PROTOS)
	for dir in protos $$(dirname $(PROTOS) | sort -u) $$(dirname $$(dirname $(PROTOS)) | sort -u); do \
		touch $$dir/__init__.py; done
	# The example applications' contracts, as a team generates its own (docs/services.md).
	$(PY) -m server.protoc $(EXAMPLE_PROTOS)
	for dir in $$(dirname $(EXAMPLE_PROTOS) | sort -u); do touch $$dir/__init__.py; done
	touch $@

proto: $(GENERATED)

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

node: node_modules/.installed

# The browser example (examples/web): clients generated from protos/ by protoc-gen-es, bundled by esbuild.
WEB_GENERATED := examples/web/gen/.generated
$(WEB_GENERATED): $(PROTOS) examples/web/buf.gen.yaml node_modules/.installed
	rm -rf examples/web/gen
	node_modules/.bin/buf generate --template examples/web/buf.gen.yaml
	touch $@

examples/web/dist/app.js: examples/web/src/main.js $(WEB_GENERATED)
	node_modules/.bin/esbuild examples/web/src/main.js --bundle --format=esm --minify --log-level=warning --outfile=$@

web: examples/web/dist/app.js

# Debian's Chromium for the page test (Playwright's own browser download does not work offline).
/usr/bin/chromium:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

browser: /usr/bin/chromium node

# Debian's HAProxy (2.6) for the replicas test (tests/deploy): a real gRPC-capable L7 proxy in front of
# two servers. Chosen over nginx 1.22's grpc_pass because it health-checks its backends (open-source
# nginx has passive checks only), so a draining or dead replica leaves the rotation (docs/deploy.md).
# The test starts its own with its own configuration (the package's service, if started, listens on nothing).
/usr/sbin/haproxy:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy

proxy: /usr/sbin/haproxy

lint: install breaking
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	node_modules/.bin/buf lint
	node_modules/.bin/buf format --diff --exit-code protos

# The contract of the last release (README, "Release notes"): removing, renumbering or retyping a
# field or an RPC of protos/ fails `make lint`. It reads the commit from this repository's history.
CONTRACT_RELEASE := 505cea46b62cce13fdf7c55f045975bb321536ac
BREAKING_INPUT ?= .
breaking: node_modules/.installed
	node_modules/.bin/buf breaking $(BREAKING_INPUT) --against '$(CURDIR)/.git#ref=$(CONTRACT_RELEASE)'

# mypy strict over mediator/, server/, client/, rill_wire/, tests/ and bench/ (pyproject's [tool.mypy]).
typecheck: install
	$(BIN)/mypy

pytest: install browser proxy web
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

run: install
	$(PY) -m server

bench: install
	$(PY) -m bench

# Mutation testing (mutmut) of the code the service's promises rest on; minutes, so not in CI. Each
# group runs its own tests only (tests/mutation.py); `make mutation GROUPS="binding app"` runs some.
# Survivors: .mutation/<group>/survivors.txt, `cd .mutation/<group> && ../../.venv/bin/mutmut show NAME`;
# their triage is in docs/testing.md.
GROUPS ?=
mutation: install
	$(PY) -m tests.mutation $(GROUPS)

clean:
	rm -rf .mutation $(VENV) node_modules $(GENERATED) .mypy_cache .ruff_cache .pytest_cache examples/web/gen examples/web/dist
	find protos -name '*_pb2*.py*' -delete -o -name '__init__.py' -delete
	find examples -path '*/v1/*_pb2*.py*' -delete -o -path '*/v1/__init__.py' -delete
