"""``python -m server.protoc PROTO...``: generate Python code for your own contracts.

Runs grpc_tools' protoc with the include paths a rill service needs: the current directory, the
well-known types shipped with grpcio-tools, and ``google/api/*.proto`` (HTTP rules) from
googleapis-common-protos, so ``import "google/api/annotations.proto";`` resolves offline. Writes
``*_pb2.py``, ``*_pb2.pyi`` and ``*_pb2_grpc.py`` beside each ``.proto`` (``--out DIR`` to choose)::

    python -m server.protoc protos/reports/v1/reports.proto
"""

from __future__ import annotations

import argparse
import importlib.resources
import pathlib
import sys

__all__ = ["include_paths", "main"]


def include_paths() -> list[str]:
    """Where protoc finds the well-known types and google/api/*.proto."""
    from google.api import annotations_pb2  # googleapis-common-protos ships the .proto beside it

    well_known = importlib.resources.files("grpc_tools") / "_proto"
    google_api = pathlib.Path(annotations_pb2.__file__).parent.parent.parent  # .../site-packages
    return [str(well_known), str(google_api)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m server.protoc", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("protos", nargs="+", type=pathlib.Path, help=".proto files, relative to --root")
    parser.add_argument(
        "--root", type=pathlib.Path, default=pathlib.Path("."), help="import root (default .)"
    )
    parser.add_argument("--out", type=pathlib.Path, help="output directory (default: --root)")
    args = parser.parse_args(argv)
    try:
        from grpc_tools import protoc  # type: ignore[import-untyped] # grpcio-tools ships no types
    except ImportError:
        print("python -m server.protoc needs grpcio-tools: pip install grpcio-tools", file=sys.stderr)
        return 2
    out = str(args.out or args.root)
    command = [
        "protoc",
        f"-I{args.root}",
        *(f"-I{path}" for path in include_paths()),
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *map(str, args.protos),
    ]
    return int(protoc.main(command))


if __name__ == "__main__":
    sys.exit(main())
