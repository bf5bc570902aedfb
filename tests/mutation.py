"""``make mutation``: mutmut over the code whose promises the tests guard, one group at a time.

Each group names the code to mutate (a file, and optionally mutmut's names of some of its functions)
and the tests that guard it; only those tests run against its mutants (mutmut runs, for each
mutant, the ones that cover the mutated function), which keeps each group to minutes. A group runs
in its own copy of the work tree under ``.mutation/<group>/`` with its own ``[tool.mutmut]``: mutmut
keeps its results there, so a second run only tests what changed. Each test of a mutant's run is
bounded by its own time in mutmut's clean run (this module is also the pytest plugin that does it),
so that a mutant that hangs one test costs seconds. Not in CI: it takes minutes, and its findings
are triaged by hand in docs/testing.md.

    python -m tests.mutation                 # every group
    python -m tests.mutation binding app     # some groups
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import threading
import time
import typing

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORK = ROOT / ".mutation"


class Group(typing.NamedTuple):
    source: str  # the file whose functions are mutated
    tests: tuple[str, ...]  # the tests that guard it
    functions: tuple[str, ...] = ()  # mutmut's mutant-name patterns: only these functions (default: all)


# The tests that drive a mediator (every file of tests/mediator/, so that a new one is not forgotten)
# and its observer's, but: the typing tests (mypy over the mutated tree fails every mutant, for its
# `# type: ignore`s, not for what it changes), the ones that run the examples or import the package in
# a subprocess (seconds each; they test the packaging), the limiter's and the retrying broker's own
# tests (other modules).
_NOT_MEDIATOR_RUNS = {
    "test_typing.py",
    "test_example.py",
    "test_public_api.py",
    "test_limiter.py",
    "test_retrying_broker.py",
}
MEDIATOR_TESTS = (
    *sorted(
        f"tests/mediator/{path.name}"
        for path in (ROOT / "tests" / "mediator").glob("test_*.py")
        if path.name not in _NOT_MEDIATOR_RUNS
    ),
    "tests/observability/test_observer.py",
)

GROUPS: dict[str, Group] = {
    "binding": Group(
        "server/binding.py",
        (
            "tests/server/test_adapter.py",
            "tests/server/test_service.py",
            "tests/server/test_binding.py",
            "tests/server/test_lifecycle.py",
            "tests/reliability/test_faults.py",
            "tests/reliability/test_bad_input.py",
        ),
    ),
    "app": Group(
        "server/app.py",
        (
            "tests/server/test_service.py",
            "tests/server/test_lifecycle.py",
            "tests/reliability/test_security.py",
        ),
        # The lifecycle: start-up, graceful stop, `async with`.
        ("server.app.xǁRillServerǁstart*", "server.app.xǁRillServerǁstop*", "server.app.xǁRillServerǁ__a*"),
    ),
    # The tests that drive the HTTP edge through a real listener (the Connect edge's too: it is
    # served by the same HttpServer and protocol), but: the browser's (a headless browser, seconds
    # each) and tests/server/test_http_edge.py, whose health-under-load test takes ~20 s and covers
    # nearly every function here, which made each survivor cost a minute (its other tests run by hand).
    "http": Group(
        "server/http/*.py",
        (
            "tests/server/test_http.py",
            "tests/server/test_http_limits.py",
            "tests/server/test_http_contract.py",
            "tests/server/test_page_routes.py",
            "tests/reliability/test_security.py",
            "tests/observability/test_metrics.py",
            "tests/connect/test_edge.py",
        ),
    ),
    "mediators": Group("mediator/_mediators.py", MEDIATOR_TESTS),
    "dispatch": Group("mediator/_dispatch.py", MEDIATOR_TESTS),
}

# What a group's copy of the work tree leaves out: environments, caches and other groups' results.
EXCLUDED = [".git", ".venv", "node_modules", ".mutation", "mutants", "*_cache", ".hypothesis", "__pycache__"]


def _config(group: Group) -> str:
    def toml_list(items: typing.Iterable[str]) -> str:
        return "[" + ", ".join(json.dumps(item) for item in items) + "]"

    return f"""
[tool.mutmut]
source_paths = ["server/", "mediator/"]
also_copy = ["protos/", "client/", "bench/", "examples/", "third_party/", "docs/", "package.json"]
only_mutate = {toml_list([group.source])}
pytest_add_cli_args_test_selection = {toml_list(group.tests)}
pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-x", "-p", "tests.mutation"]
# Each test of a mutant's run has its own bound (pytest_runtest_protocol below); mutmut's timeout of
# the whole run, at its default of 15x the tests' clean calls, is only a backstop for a hang elsewhere.
"""


# The per-test bound inside mutant runs: this module is also a pytest plugin (`-p tests.mutation` in
# each group's configuration). mutmut itself bounds a mutant's whole run, by 5x the clean time of all
# the tests that cover the mutated function (for `dispatch`, most of tests/mediator/): a mutant that
# makes one test hang then waits out everyone's time. Here each test of a mutant's run is bounded by
# its own clean time instead, measured in mutmut's clean run of the same tests on the same machine
# just before. A test past its bound ends the run with mutmut's "timeout" exit code: counted as
# killed, as mutmut's own timeout is; a bound too tight can only ever kill, never let one survive.
BOUND_FACTOR = 5.0  # a test of a mutant may take this many times its clean time...
BOUND_SLACK = 1.0  # ...plus this many seconds (mutmut's timeout_constant), for the jitter of quick tests
TIMED_OUT = 36  # the exit code mutmut reads as "timeout" (mutmut.stats.status_by_exit_code)
CLEAN_TIMES = "clean-times.json"  # in mutants/: each test's time in the clean run, and the fixtures'
_clean_times: dict[str, float] = {}  # test id -> seconds, for the whole protocol: setup, call, teardown
_shared_fixture_times: list[float] = []  # setups of session, package and module fixtures
_bounds: dict[str, float] = {}


def _phase() -> str:
    """mutmut's phase: "" is its clean run, a mutant's name (``…__mutmut_<n>``) one mutant's run."""
    return os.environ.get("MUTANT_UNDER_TEST", "")


def _in_mutant_run() -> bool:
    return "__mutmut_" in _phase()


def bounds_from(clean: dict[str, typing.Any]) -> dict[str, float]:
    """Each test's bound in a mutant's run, from the clean run's times. A mutant's run orders the tests
    by time, not by module, so any test may pay a setup of a shared fixture (the session's compiled
    protos, a module's CA) that another paid in the clean run: every bound allows for all of them."""
    shared = sum(clean["shared_fixtures"])
    tests: dict[str, float] = clean["tests"]
    return {test: BOUND_FACTOR * (seconds + shared) + BOUND_SLACK for test, seconds in tests.items()}


def pytest_configure(config: pytest.Config) -> None:
    _clean_times.clear()
    _shared_fixture_times.clear()
    _bounds.clear()
    recorded = config.rootpath / CLEAN_TIMES
    if _in_mutant_run() and recorded.exists():
        _bounds.update(bounds_from(json.loads(recorded.read_text())))


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[object]) -> typing.Generator[None, object, object]:
    started = time.perf_counter()
    try:
        return (yield)
    finally:
        if fixturedef.scope != "function" and _phase() == "":
            _shared_fixture_times.append(time.perf_counter() - started)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> typing.Generator[None, object, object]:
    bound = _bounds.get(item.nodeid)
    if bound is None:  # the clean run (or a test it did not run: mutmut's own timeout bounds it)
        started = time.perf_counter()
        try:
            return (yield)
        finally:
            if _phase() == "":
                _clean_times[item.nodeid] = time.perf_counter() - started
    # os._exit: a hung event loop cannot be interrupted from another thread, and the run's verdict is
    # all that is wanted of it. (pytest-timeout's thread method exits 1, which mutmut reads as killed.)
    timer = threading.Timer(bound, os._exit, (TIMED_OUT,))
    timer.daemon = True
    timer.start()
    try:
        return (yield)
    finally:
        timer.cancel()


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _phase() == "" and _clean_times:
        recorded = {"tests": _clean_times, "shared_fixtures": _shared_fixture_times}
        (session.config.rootpath / CLEAN_TIMES).write_text(json.dumps(recorded, indent=1))


def run_group(
    name: str, group: Group, max_children: int, tree: pathlib.Path = ROOT, into: pathlib.Path = WORK
) -> dict[str, int]:
    """Runs mutmut for one group over a copy of ``tree`` (default: this work tree); its counts."""
    work = into / name
    work.mkdir(parents=True, exist_ok=True)
    # rsync keeps unchanged files' times, so mutmut's cache of results stays valid between runs.
    excludes = [f"--exclude={pattern}" for pattern in EXCLUDED]
    subprocess.run(
        ["rsync", "-a", "--delete", *excludes, "--exclude=/pyproject.toml", f"{tree}/", f"{work}/"],
        check=True,
    )
    tests = [path for path in group.tests if (tree / path).exists()]  # an older tree may lack some
    config = (tree / "pyproject.toml").read_text() + _config(group._replace(tests=tuple(tests)))
    target = work / "pyproject.toml"
    if not target.exists() or target.read_text() != config:
        target.write_text(config)
    mutmut = pathlib.Path(sys.executable).with_name("mutmut")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    log = work / "mutmut.log"
    with log.open("w") as output:
        done = subprocess.run(
            [str(mutmut), "run", "--max-children", str(max_children), *group.functions],
            cwd=work,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0:
        sys.exit(f"mutmut failed for {name} (exit {done.returncode}): see {log}")
    subprocess.run([str(mutmut), "export-cicd-stats"], cwd=work, env=env, check=True, capture_output=True)
    stats: dict[str, int] = json.loads((work / "mutants" / "mutmut-cicd-stats.json").read_text())
    results = subprocess.run(
        [str(mutmut), "results"], cwd=work, env=env, check=True, capture_output=True, text=True
    ).stdout
    (work / "survivors.txt").write_text(results)
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("groups", nargs="*", metavar="group", help=f"default: all of {', '.join(GROUPS)}")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    parser.add_argument(
        "--tree", type=pathlib.Path, default=ROOT, help="another checkout to measure (e.g. an older commit)"
    )
    parser.add_argument("--work", type=pathlib.Path, default=WORK, help="where the groups' copies go")
    args = parser.parse_args()
    unknown = set(args.groups) - set(GROUPS)
    if unknown:
        parser.error(f"no group {', '.join(sorted(unknown))}; the groups are {', '.join(GROUPS)}")
    rows = []
    for name in args.groups or GROUPS:
        started = time.monotonic()
        stats = run_group(name, GROUPS[name], args.max_children, args.tree.resolve(), args.work.resolve())
        tested = stats["killed"] + stats["survived"] + stats["timeout"] + stats["suspicious"]
        score = 100 * (stats["killed"] + stats["timeout"]) / tested if tested else 0.0
        rows.append((name, stats, score, time.monotonic() - started))
        print(
            f"{name}: {stats['killed']} killed, {stats['survived']} survived, {stats['no_tests']} untested, "
            f"{stats['timeout']} timed out of {stats['total']}: score {score:.0f} % "
            f"({time.monotonic() - started:.0f} s; survivors in .mutation/{name}/survivors.txt)",
            flush=True,
        )
    if len(rows) > 1:
        print("\n| group | mutants | killed | survived | no test | timeout | score |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for name, stats, score, _ in rows:
            print(
                f"| {name} | {stats['total']} | {stats['killed']} | {stats['survived']} | "
                f"{stats['no_tests']} | {stats['timeout']} | {score:.0f} % |"
            )


if __name__ == "__main__":
    main()
