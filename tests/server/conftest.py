"""Fixtures of the server tests: the test contract of server.convert, compiled once per session."""

from __future__ import annotations

import pathlib
import types

import pytest

from tests.protoc import compile_protos


@pytest.fixture(scope="session")
def convert_pb2(tmp_path_factory: pytest.TempPathFactory) -> types.ModuleType:
    """``convert_test.v1.convert_pb2`` from tests/server/protos (every proto3 field kind)."""
    source = pathlib.Path(__file__).parent / "protos"
    (module,) = compile_protos(source, tmp_path_factory.mktemp("protos"), "convert_test.v1.convert_pb2")
    return module
