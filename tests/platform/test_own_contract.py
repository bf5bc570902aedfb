"""From a team's own .proto to a served, tested stream: ``python -m server.protoc``, a binding, serving."""

from __future__ import annotations

import datetime
import importlib
import pathlib
import subprocess
import sys
import typing

import grpc
import pydantic
import pytest

import mediator
from mediator import bootstrap
from server import Rpc, ServiceBinding
from server.testing import serving

PROTO = """
syntax = "proto3";
package reports.v1;
import "google/api/annotations.proto";
import "google/protobuf/timestamp.proto";

service ReportService {
  rpc ExportRows(ExportRowsRequest) returns (stream Row) {
    option (google.api.http) = {post: "/v1/reports/{report_id}:export" body: "*"};
  }
}
message ExportRowsRequest { string report_id = 1; int32 rows = 2; }
message Row { string report_id = 1; int32 index = 2; google.protobuf.Timestamp exported_at = 3; }
"""


class ExportRows(mediator.Request):
    report_id: str
    rows: int = pydantic.Field(ge=0, le=1_000)


class Row(mediator.Response):
    report_id: str
    index: int
    exported_at: datetime.datetime


class ExportRowsHandler(mediator.StreamingRequestHandler[ExportRows, Row]):
    async def handle(self, request: ExportRows) -> typing.AsyncIterator[Row]:
        for index in range(request.rows):
            yield Row(
                report_id=request.report_id, index=index, exported_at=datetime.datetime.now(datetime.UTC)
            )


@pytest.fixture
def generated(tmp_path: pathlib.Path) -> typing.Iterator[typing.Any]:
    (tmp_path / "reports" / "v1").mkdir(parents=True)
    (tmp_path / "reports" / "v1" / "reports.proto").write_text(PROTO)
    completed = subprocess.run(
        [sys.executable, "-m", "server.protoc", "reports/v1/reports.proto"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        yield (
            importlib.import_module("reports.v1.reports_pb2"),
            importlib.import_module("reports.v1.reports_pb2_grpc"),
        )
    finally:
        sys.path.remove(str(tmp_path))
        for name in [name for name in sys.modules if name == "reports" or name.startswith("reports.")]:
            del sys.modules[name]


async def test_a_contract_of_its_own_is_generated_bound_and_served(generated: typing.Any) -> None:
    reports_pb2, reports_pb2_grpc = generated

    def commands(mapper: mediator.RequestMap) -> None:
        mapper.bind(ExportRows, ExportRowsHandler)

    binding = ServiceBinding(
        reports_pb2.DESCRIPTOR.services_by_name["ReportService"],
        streaming=bootstrap.bootstrap_streaming(commands_mapper=commands),
        rpcs=[Rpc("ExportRows", ExportRows, Row)],
    )
    assert binding.settings_name == "reports"
    async with serving([binding]) as served:
        stub = reports_pb2_grpc.ReportServiceStub(served.channel)
        rows = [row async for row in stub.ExportRows(reports_pb2.ExportRowsRequest(report_id="q3", rows=3))]
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async for _ in stub.ExportRows(reports_pb2.ExportRowsRequest(report_id="q3", rows=-1)):
                pass
    assert [(row.report_id, row.index) for row in rows] == [("q3", 0), ("q3", 1), ("q3", 2)]
    assert all(row.exported_at.seconds > 0 for row in rows)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "rows" in (refused.value.details() or "")
