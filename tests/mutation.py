"""``make mutation``: mutmut over the code whose promises the tests guard, one group at a time.

Each group names the code to mutate (a file, and optionally mutmut's names of some of its functions)
and the tests that guard it; only those tests run against its mutants (mutmut runs, for each
mutant, the ones that cover the mutated function), which keeps each group to minutes. A group runs
in its own copy of the work tree under ``.mutation/<group>/`` with its own ``[tool.mutmut]``: mutmut
keeps its results there, so a second run only tests what changed. Not in CI: it takes minutes, and
its findings are triaged by hand in docs/testing.md.

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
import time
import typing

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
pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-x"]
# A mutant that makes a test hang is killed once its tests take 5x their clean time (mutmut: 15x).
timeout_multiplier = 5.0
"""


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
