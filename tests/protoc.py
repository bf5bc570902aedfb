"""Compile test contracts with grpc_tools.protoc into a temporary directory, and import them.

Test-only .proto files live beside their tests (e.g. ``tests/server/protos/``); their generated code
is never kept in the tree. The well-known types (``google/protobuf/*.proto``) come from grpc_tools.
"""

from __future__ import annotations

import importlib
import importlib.resources
import pathlib
import sys
import types

from grpc_tools import protoc  # type: ignore[import-untyped] # grpcio-tools ships no types

__all__ = ["compile_protos"]


def compile_protos(source: pathlib.Path, out: pathlib.Path, *modules: str) -> list[types.ModuleType]:
    """Generate Python for every .proto under ``source`` into ``out``, then import ``modules``."""
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    protos = [str(path.relative_to(source)) for path in sorted(source.rglob("*.proto"))]
    arguments = ["protoc", f"-I{source}", f"-I{well_known}", f"--python_out={out}", f"--pyi_out={out}"]
    if protoc.main([*arguments, *protos]) != 0:
        raise RuntimeError(f"protoc failed on {protos}")
    if str(out) not in sys.path:
        sys.path.insert(0, str(out))
    importlib.invalidate_caches()
    return [importlib.import_module(module) for module in modules]
