"""The one build step pyproject.toml cannot declare: the generated protobuf code goes into the wheel.

The code generated from ``protos/`` is not kept in git (``make proto`` writes it for a checkout), so
``build_py`` generates it first, as ``make`` does, with grpc_tools (a build requirement): a wheel
built from a fresh clone (``pip wheel --no-deps .``) holds ``protos/**/*_pb2.py`` and their stubs.
Everything else about the distribution is in pyproject.toml.
"""

from __future__ import annotations

import importlib.resources
import pathlib

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = pathlib.Path(__file__).resolve().parent


def generate_protos() -> None:
    """``protos/<package>/v1/*.proto`` -> ``*_pb2.py``, ``*_pb2.pyi``, ``*_pb2_grpc.py`` beside them."""
    from grpc_tools import protoc

    protos = sorted((ROOT / "protos").glob("*/v1/*.proto"))
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    arguments = [
        "protoc",
        f"-Iprotos={ROOT / 'protos'}",
        f"-I{ROOT / 'third_party' / 'googleapis'}",
        f"-I{well_known}",
        f"--python_out={ROOT}",
        f"--pyi_out={ROOT}",
        f"--grpc_python_out={ROOT}",
        *(str(proto) for proto in protos),
    ]
    if protoc.main(arguments) != 0:
        raise SystemExit(f"protoc failed on {[str(proto) for proto in protos]}")
    packages = {ROOT / "protos", *(p.parent for p in protos), *(p.parent.parent for p in protos)}
    for package in packages:
        (package / "__init__.py").touch()


class BuildPyWithProtos(build_py):
    def run(self) -> None:
        generate_protos()
        super().run()


setup(cmdclass={"build_py": BuildPyWithProtos})
