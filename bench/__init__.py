"""rill's benchmarks (measurements to read, not timed tests).

Every public module of this package (a name not starting with ``_``) that defines
``main(argv: list[str] | None = None) -> int`` is a benchmark: ``python -m bench`` runs them all in
name order and prints their tables; ``python -m bench NAME [ARGS...]`` runs one. The module's
docstring's first line is its description in ``python -m bench --list``. To add a benchmark, drop
such a module next to ``mediator_throughput.py``: nothing needs registering.
"""
