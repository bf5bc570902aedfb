"""Run rill's benchmarks: ``python -m bench [NAME ...] [ARGS ...]`` (see ``bench/README.md``).

With no NAME every benchmark in ``bench/`` runs; ARGS (everything from the first argument starting
with ``-``) go to each benchmark that runs. ``--list`` lists them; ``NAME --help`` shows one's flags.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import types

import bench


def discover() -> dict[str, types.ModuleType]:
    """Every benchmark module in the package, by name: public modules that define ``main``."""
    found: dict[str, types.ModuleType] = {}
    for info in sorted(pkgutil.iter_modules(bench.__path__), key=lambda info: info.name):
        if info.name.startswith("_") or info.ispkg:
            continue
        module = importlib.import_module(f"{bench.__name__}.{info.name}")
        if callable(getattr(module, "main", None)):
            found[info.name] = module
    return found


def _summary(module: types.ModuleType) -> str:
    return (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else ""


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    available = discover()
    if args in (["-h"], ["--help"], ["--list"]):
        if args != ["--list"]:
            print(__doc__.strip(), end="\n\n")
        print("benchmarks:")
        for name, module in available.items():
            print(f"  {name:24} {_summary(module)}")
        return 0
    names: list[str] = []
    while args and not args[0].startswith("-"):
        name = args.pop(0)
        if name not in available:
            print(f"no benchmark named {name!r}; there are: {', '.join(available)}", file=sys.stderr)
            return 2
        names.append(name)
    status = 0
    for name in names or list(available):
        module = available[name]
        print(f"=== {name}: {_summary(module)}", flush=True)
        status = max(status, int(module.main(list(args)) or 0))
        print(flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
