"""server.convert: protobuf <-> pydantic, planned once per RPC."""

from __future__ import annotations

import asyncio
import datetime
import enum
import sys
import types
import typing

import grpc
import hypothesis
import pydantic
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory, timestamp_pb2

import mediator
from protos.orders.v1 import orders_pb2
from server.binding import Rpc, ServiceBinding
from server.convert import BindingError, OneofConflict, oneof_check, to_model, to_proto
from server.errors import InvalidArgument
from server.testing import serving
from tests.server.convert_models import (
    Colour,
    EverythingRequest,
    EverythingResponse,
    Line,
    Point,
    Row,
    RowsRequest,
    Tree,
)

UTC = datetime.UTC


class Result(pydantic.BaseModel):
    order_id: str
    status: str
    processed_at: datetime.datetime | None = None
    items_count: int


def _result_to_proto() -> typing.Callable[[pydantic.BaseModel], typing.Any]:
    return to_proto(Result, orders_pb2.OrderProcessedResult)


def test_to_proto_copies_scalars_and_an_aware_timestamp_to_the_nanosecond() -> None:
    when = datetime.datetime(2026, 11, 27, 14, 43, 43, 123456, tzinfo=UTC)
    message = _result_to_proto()(Result(order_id="a", status="processed", processed_at=when, items_count=3))
    assert (message.order_id, message.status, message.items_count) == ("a", "processed", 3)
    expected = timestamp_pb2.Timestamp()
    expected.FromDatetime(when)
    assert (message.processed_at.seconds, message.processed_at.nanos) == (expected.seconds, expected.nanos)
    assert message.processed_at.ToDatetime(tzinfo=UTC) == when


def test_to_proto_reads_an_aware_timestamp_in_another_zone_as_the_same_instant() -> None:
    when = datetime.datetime(2026, 1, 1, 1, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    message = _result_to_proto()(Result(order_id="a", status="s", processed_at=when, items_count=0))
    assert message.processed_at.ToDatetime(tzinfo=UTC) == datetime.datetime(2025, 12, 31, 23, 0, tzinfo=UTC)


def test_to_proto_takes_a_naive_timestamp_as_utc_like_from_datetime() -> None:
    when = datetime.datetime(1969, 12, 31, 23, 59, 59, 500000)  # before the epoch: negative seconds
    message = _result_to_proto()(Result(order_id="a", status="s", processed_at=when, items_count=0))
    expected = timestamp_pb2.Timestamp()
    expected.FromDatetime(when)
    assert (message.processed_at.seconds, message.processed_at.nanos) == (expected.seconds, expected.nanos)


def test_to_proto_leaves_an_absent_timestamp_unset() -> None:
    message = _result_to_proto()(Result(order_id="a", status="s", items_count=1))
    assert not message.HasField("processed_at")


def test_to_model_passes_repeated_fields_as_lists_and_validates() -> None:
    class Command(pydantic.BaseModel):
        order_ids: list[str] = pydantic.Field(min_length=1)

    convert = to_model(orders_pb2.ProcessOrdersRequest.DESCRIPTOR, Command)
    assert convert(orders_pb2.ProcessOrdersRequest(order_ids=["a", "b"])).order_ids == ["a", "b"]
    with pytest.raises(pydantic.ValidationError):
        convert(orders_pb2.ProcessOrdersRequest())


def test_to_model_leaves_an_unset_timestamp_to_the_model_and_reads_a_set_one_as_utc() -> None:
    convert = to_model(orders_pb2.OrderProcessedResult.DESCRIPTOR, Result)
    assert convert(orders_pb2.OrderProcessedResult(order_id="a")).processed_at is None
    message = orders_pb2.OrderProcessedResult(order_id="a")
    message.processed_at.FromSeconds(86_400)
    assert convert(message).processed_at == datetime.datetime(1970, 1, 2, tzinfo=UTC)


def test_a_field_the_model_lacks_is_an_error_at_bind_time() -> None:
    class Partial(pydantic.BaseModel):
        order_id: str

    with pytest.raises(BindingError, match="status"):
        to_proto(Partial, orders_pb2.OrderProcessedResult)


def _keyword_message() -> typing.Any:
    """A message whose field names are Python keywords: ``string from = 1; Timestamp class = 2;``."""
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    file = descriptor_pb2.FileDescriptorProto(
        name="keywords.proto",
        package="test.keywords",
        syntax="proto3",
        dependency=[timestamp_pb2.DESCRIPTOR.name],
    )
    message = file.message_type.add(name="Keywords")
    label = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
    message.field.add(
        name="from", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING, label=label
    )
    message.field.add(
        name="class",
        number=2,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
        type_name=".google.protobuf.Timestamp",
        label=label,
    )
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("test.keywords.Keywords"))


def test_field_names_that_are_python_keywords_convert_both_ways() -> None:
    keywords = _keyword_message()
    fields: dict[str, typing.Any] = {"from": (str, ...), "class": (datetime.datetime | None, None)}
    model = pydantic.create_model("KeywordModel", **fields)
    when = datetime.datetime(2026, 11, 27, tzinfo=UTC)
    message = to_proto(model, keywords)(model.model_validate({"from": "x", "class": when}))
    assert getattr(message, "from") == "x"
    assert getattr(message, "class").ToDatetime(tzinfo=UTC) == when
    back = to_model(keywords.DESCRIPTOR, model)(message)
    assert (getattr(back, "from"), getattr(back, "class")) == ("x", when)


# -- the whole of proto3: tests/server/protos/convert_test/v1/convert.proto ----------------------------

WHEN = datetime.datetime(2026, 11, 27, 14, 43, 43, 123456, tzinfo=UTC)


def _everything() -> EverythingResponse:
    """A response with every field set to something other than its default (but one oneof member)."""
    return EverythingResponse(
        text="héllo",
        small=-7,
        big=2**40,
        unsigned=2**63,
        real=0.5,
        single=1.5,
        flag=True,
        blob=b"\x00\xff",
        maybe_text="",
        maybe_number=0,
        tags=["a", "b"],
        numbers=[1, -2],
        point=Point(x=1, y=2, label="p"),
        points=[Point(x=3), Point(y=4)],
        line=Line(start=Point(x=5), end=Point(y=6), colour=Colour.COLOUR_GREEN),
        counts={"a": 1, "b": 0},
        points_by_id={7: Point(label="seven")},
        colours_by_name={"sky": Colour.COLOUR_RED},
        colour=Colour.COLOUR_RED,
        colours=[Colour.COLOUR_GREEN, Colour.COLOUR_UNSPECIFIED],
        colour_number=5,
        choice_point=Point(x=9),
        at=WHEN,
        ats=[WHEN, datetime.datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC)],
        took=datetime.timedelta(seconds=-1.5),
        maybe_int=0,
        maybe_string="s",
        maybe_bool=False,
        maybe_bytes=b"",
        maybe_double=2.25,
        attributes={"nested": {"list": [1.0, "x", None, True]}, "n": 2.0},
        anything=["any", {"json": 1.0}],
        items=[1.0, "two"],
        stamps_by_name={"start": WHEN},
    )


def _by_hand(pb: types.ModuleType, item: EverythingResponse) -> typing.Any:
    """The message ``item`` stands for, built with protobuf's own API (the plain path to compare with)."""
    message = pb.Everything(
        text=item.text,
        small=item.small,
        big=item.big,
        unsigned=item.unsigned,
        real=item.real,
        single=item.single,
        flag=item.flag,
        blob=item.blob,
        maybe_text=item.maybe_text,
        maybe_number=item.maybe_number,
        tags=item.tags,
        numbers=item.numbers,
        colour=pb.Colour.Value(item.colour.name),
        colours=[pb.Colour.Value(colour.name) for colour in item.colours],
        colour_number=item.colour_number,
    )
    assert item.point is not None
    assert item.line is not None
    assert item.choice_point is not None
    message.point.CopyFrom(pb.Point(**item.point.model_dump()))
    message.points.extend(pb.Point(**point.model_dump()) for point in item.points)
    assert item.line.start is not None
    assert item.line.end is not None
    message.line.start.CopyFrom(pb.Point(**item.line.start.model_dump()))
    message.line.end.CopyFrom(pb.Point(**item.line.end.model_dump()))
    message.line.colour = pb.Colour.Value(item.line.colour.name)
    message.counts.update(item.counts)
    for point_id, point in item.points_by_id.items():
        message.points_by_id[point_id].CopyFrom(pb.Point(**point.model_dump()))
    for key, colour in item.colours_by_name.items():
        message.colours_by_name[key] = pb.Colour.Value(colour.name)
    message.choice_point.CopyFrom(pb.Point(**item.choice_point.model_dump()))
    assert item.at is not None
    assert item.took is not None
    message.at.FromDatetime(item.at)
    for when in item.ats:
        message.ats.add().FromDatetime(when)
    message.took.FromTimedelta(item.took)
    message.maybe_int.value = typing.cast(int, item.maybe_int)
    message.maybe_string.value = typing.cast(str, item.maybe_string)
    message.maybe_bool.value = typing.cast(bool, item.maybe_bool)
    message.maybe_bytes.value = typing.cast(bytes, item.maybe_bytes)
    message.maybe_double.value = typing.cast(float, item.maybe_double)
    message.attributes.update(typing.cast(dict[str, typing.Any], item.attributes))
    json_format.ParseDict(item.anything, message.anything)
    message.items.extend(typing.cast(list[typing.Any], item.items))
    for key, when in item.stamps_by_name.items():
        message.stamps_by_name[key].FromDatetime(when)
    return message


def test_every_proto3_field_kind_is_written_as_protobuf_s_own_api_writes_it(
    convert_pb2: types.ModuleType,
) -> None:
    item = _everything()
    message = to_proto(EverythingResponse, convert_pb2.Everything)(item)
    expected = _by_hand(convert_pb2, item)
    assert message == expected
    assert message.SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)


def test_every_proto3_field_kind_reads_back_to_the_same_model(convert_pb2: types.ModuleType) -> None:
    item = _everything()
    message = to_proto(EverythingResponse, convert_pb2.Everything)(item)
    back = to_model(convert_pb2.Everything.DESCRIPTOR, EverythingResponse)(message)
    assert back == item
    assert back.took == datetime.timedelta(seconds=-1.5)
    assert back.at is not None
    assert back.at.tzinfo is not None


def test_unset_fields_write_nothing_and_read_back_as_the_models_defaults(
    convert_pb2: types.ModuleType,
) -> None:
    message = to_proto(EverythingResponse, convert_pb2.Everything)(EverythingResponse())
    assert message.ListFields() == []  # optional scalars, messages, wrappers, Struct, oneof: all unset
    back = to_model(convert_pb2.Everything.DESCRIPTOR, EverythingResponse)(convert_pb2.Everything())
    assert back == EverythingResponse()
    assert (back.maybe_text, back.maybe_int, back.point, back.took, back.attributes) == (None,) * 5


def test_optional_scalars_and_wrappers_tell_zero_from_unset(convert_pb2: types.ModuleType) -> None:
    item = EverythingResponse(maybe_number=0, maybe_int=0, maybe_bool=False)
    message = to_proto(EverythingResponse, convert_pb2.Everything)(item)
    assert message.HasField("maybe_number")
    assert message.HasField("maybe_int")
    assert message.HasField("maybe_bool")
    assert not message.HasField("maybe_text")
    assert not message.HasField("maybe_string")


def test_a_message_that_holds_itself_converts_both_ways(convert_pb2: types.ModuleType) -> None:
    tree = Tree(name="root", children=[Tree(name="a", children=[Tree(name="a1")]), Tree(name="b")])
    message: typing.Any = to_proto(Tree, convert_pb2.Tree)(tree)  # a class compiled by the test
    assert [child.name for child in message.children] == ["a", "b"]
    assert message.children[0].children[0].name == "a1"
    assert to_model(convert_pb2.Tree.DESCRIPTOR, Tree)(message) == tree


@hypothesis.given(
    when=hypothesis.strategies.datetimes(
        min_value=datetime.datetime(1, 1, 1, 0, 0), timezones=hypothesis.strategies.sampled_from([None, UTC])
    ),
    took=hypothesis.strategies.timedeltas(),
)
def test_timestamps_and_durations_agree_with_protobufs_from_datetime_and_from_timedelta(
    convert_pb2: types.ModuleType, when: datetime.datetime, took: datetime.timedelta
) -> None:
    # The converter sets Timestamps by its own arithmetic (bench/README.md): it must agree with
    # FromDatetime (naive = UTC) for every instant, before 1970 included.
    message: typing.Any = to_proto(EverythingResponse, convert_pb2.Everything)(  # compiled by the test
        EverythingResponse.model_construct(
            **{**EverythingResponse().__dict__, "at": when, "took": took, "ats": [when]}
        )
    )
    expected = convert_pb2.Everything()
    expected.at.FromDatetime(when)
    expected.ats.add().FromDatetime(when)
    expected.took.FromTimedelta(took)
    assert (message.at, message.ats[0], message.took) == (expected.at, expected.ats[0], expected.took)


# -- enums ------------------------------------------------------------------------------------------


def test_an_enum_is_read_by_value_name_and_an_int_model_field_keeps_the_number(
    convert_pb2: types.ModuleType,
) -> None:
    message = convert_pb2.Everything(colour=convert_pb2.COLOUR_GREEN, colour_number=convert_pb2.COLOUR_RED)
    back = to_model(convert_pb2.Everything.DESCRIPTOR, EverythingRequest)(message)
    assert (back.colour, back.colour_number) == (Colour.COLOUR_GREEN, 1)


def test_an_enum_number_the_model_has_no_member_for_is_a_validation_error_naming_the_field(
    convert_pb2: types.ModuleType,
) -> None:
    message = convert_pb2.Everything(colour=42)  # proto3 enums are open: the wire may carry any number
    with pytest.raises(pydantic.ValidationError) as raised:
        to_model(convert_pb2.Everything.DESCRIPTOR, EverythingRequest)(message)
    assert raised.value.errors()[0]["loc"] == ("colour",)


def test_an_enum_member_the_proto_does_not_have_is_an_error_at_bind_time(
    convert_pb2: types.ModuleType,
) -> None:
    class Shade(enum.Enum):
        COLOUR_RED = 1
        COLOUR_BLUE = 2

    model = pydantic.create_model("WithShade", colour=(Shade, Shade.COLOUR_RED), __base__=Line)
    with pytest.raises(BindingError, match=r"convert_test\.v1\.Line\.colour: Shade\.COLOUR_BLUE"):
        to_proto(model, convert_pb2.Line)


# -- oneofs -----------------------------------------------------------------------------------------


def test_a_oneof_reads_the_member_that_is_set_and_leaves_the_others_none(
    convert_pb2: types.ModuleType,
) -> None:
    message = convert_pb2.Everything(choice_number=0)
    back = to_model(convert_pb2.Everything.DESCRIPTOR, EverythingRequest)(message)
    assert (back.choice_text, back.choice_point, back.choice_number) == (None, None, 0)


def test_writing_two_members_of_a_oneof_is_an_error_not_a_silent_choice(
    convert_pb2: types.ModuleType,
) -> None:
    convert = to_proto(EverythingResponse, convert_pb2.Everything)
    with pytest.raises(OneofConflict, match="choice_text, choice_point, choice_number"):
        convert(EverythingResponse(choice_text="a", choice_number=1))


def test_a_model_with_two_members_of_a_oneof_set_is_invalid_argument_on_the_way_in(
    convert_pb2: types.ModuleType,
) -> None:
    check = oneof_check(convert_pb2.Everything.DESCRIPTOR, EverythingRequest)
    check(EverythingRequest(choice_text="a"))
    with pytest.raises(InvalidArgument) as raised:
        check(EverythingRequest(choice_text="a", choice_point=Point()))
    assert [violation.field for violation in raised.value.violations] == ["choice_text", "choice_point"]


def test_a_oneof_member_the_model_requires_is_an_error_at_bind_time(convert_pb2: types.ModuleType) -> None:
    model = pydantic.create_model("Required", choice_text=(str, ...), __base__=EverythingResponse)
    with pytest.raises(BindingError, match=r"Everything\.choice_text is a member of oneof choice"):
        to_proto(model, convert_pb2.Everything)


# -- what cannot be mapped, named at bind time ------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "annotation", "why"),
    [
        (
            "point",
            str,
            r"Everything\.point is the message convert_test\.v1\.Point: the model needs a pydantic model",
        ),
        ("points", Point, r"Everything\.points is repeated: the model needs a list"),
        ("counts", list[int], r"Everything\.counts is a map: the model needs a dict"),
        ("counts", dict[str, str], r"Everything\.counts \(value\) holds int values"),
        ("at", str, r"Everything\.at is a google\.protobuf\.Timestamp: the model needs an aware datetime"),
        ("took", float, r"Everything\.took is a google\.protobuf\.Duration: the model needs a timedelta"),
        ("colour", str, r"Everything\.colour is the enum convert_test\.v1\.Colour"),
        ("small", str, r"Everything\.small holds int values: the model's str cannot carry them"),
        ("blob", str, r"Everything\.blob holds bytes values"),
        ("maybe_int", str | None, r"Everything\.maybe_int holds int values"),
        (
            "attributes",
            list[int],
            r"Everything\.attributes is a google\.protobuf\.Struct: the model needs a dict",
        ),
    ],
)
def test_a_field_the_model_cannot_carry_is_an_error_at_bind_time_naming_it_and_why(
    convert_pb2: types.ModuleType, field: str, annotation: typing.Any, why: str
) -> None:
    fields: dict[str, typing.Any] = {field: (annotation, None)}
    model = pydantic.create_model("Wrong", **fields, __base__=EverythingResponse)
    with pytest.raises(BindingError, match=why):
        to_proto(model, convert_pb2.Everything)
    with pytest.raises(BindingError, match=why):
        to_model(convert_pb2.Everything.DESCRIPTOR, model)


def test_a_required_model_field_the_request_cannot_fill_is_an_error_at_bind_time(
    convert_pb2: types.ModuleType,
) -> None:
    model = pydantic.create_model("Extra", tenant=(str, ...), __base__=RowsRequest)
    with pytest.raises(
        BindingError, match=r"Extra\.tenant: required, and not in convert_test\.v1\.RowsRequest"
    ):
        to_model(convert_pb2.RowsRequest.DESCRIPTOR, model)


# -- the generated class as the response -------------------------------------------------------------


def test_the_generated_message_class_as_the_response_is_written_as_is(convert_pb2: types.ModuleType) -> None:
    row = convert_pb2.Row(id="r")
    assert to_proto(convert_pb2.Row, convert_pb2.Row)(row) is row
    with pytest.raises(
        BindingError, match=r"the response is a convert_test\.v1\.Row, not a convert_test\.v1\.Point"
    ):
        to_proto(convert_pb2.Point, convert_pb2.Row)


# -- through the real adapter -----------------------------------------------------------------------


class EchoHandler(mediator.RequestHandler[EverythingRequest, EverythingResponse]):
    async def handle(self, request: EverythingRequest) -> EverythingResponse:
        await asyncio.sleep(0)
        return EverythingResponse(**dict(request))


def _row(index: int, colour: Colour) -> Row:
    return Row(
        id=f"r{index}",
        position=Point(x=index, y=-index),
        path=[Point(x=step) for step in range(index)],
        labels={"n": str(index)},
        colour=colour,
        at=WHEN,
    )


class RowsHandler(mediator.StreamingRequestHandler[RowsRequest, Row]):
    async def handle(self, request: RowsRequest) -> typing.AsyncIterator[Row]:
        for index in range(request.count):
            await asyncio.sleep(0)
            yield _row(index, request.colour)


class RawRowsRequest(RowsRequest):
    pass


class RawRowsHandler(mediator.StreamingRequestHandler[RawRowsRequest, typing.Any]):
    def __init__(self) -> None:
        self.pb: typing.Any = sys.modules["convert_test.v1.convert_pb2"]

    async def handle(self, request: RawRowsRequest) -> typing.AsyncIterator[typing.Any]:
        for index in range(request.count):
            await asyncio.sleep(0)
            yield self.pb.Row(id=f"raw{index}", colour=self.pb.Colour.Value(request.colour.name))


@pytest.fixture
async def convert_channel(convert_pb2: types.ModuleType) -> typing.AsyncIterator[grpc.aio.Channel]:
    def commands(mapper: mediator.RequestMap) -> None:
        mapper.bind(EverythingRequest, EchoHandler)
        mapper.bind(RowsRequest, RowsHandler)
        mapper.bind(RawRowsRequest, RawRowsHandler)

    binding = ServiceBinding(
        convert_pb2.DESCRIPTOR.services_by_name["ConvertService"],
        streaming=mediator.bootstrap.bootstrap_streaming(commands_mapper=commands),
        unary=mediator.bootstrap.bootstrap(commands_mapper=commands),
        rpcs=[
            Rpc("Echo", EverythingRequest, EverythingResponse),
            Rpc("Rows", RowsRequest, Row),
            Rpc("RawRows", RawRowsRequest, convert_pb2.Row),
        ],
    )
    async with serving([binding]) as served:  # served as production serves any binding
        yield served.channel


async def test_a_served_rpc_echoes_every_field_kind_over_the_wire(
    convert_pb2: types.ModuleType, convert_channel: grpc.aio.Channel
) -> None:
    sent = _by_hand(convert_pb2, _everything())
    echo = convert_channel.unary_unary(
        "/convert_test.v1.ConvertService/Echo",
        request_serializer=convert_pb2.Everything.SerializeToString,
        response_deserializer=convert_pb2.Everything.FromString,
    )
    assert await echo(sent, timeout=10) == sent


async def test_a_stream_of_nested_messages_arrives_converted_and_a_bad_enum_is_invalid_argument(
    convert_pb2: types.ModuleType, convert_channel: grpc.aio.Channel
) -> None:
    def rows(method: str) -> typing.Any:
        return convert_channel.unary_stream(
            f"/convert_test.v1.ConvertService/{method}",
            request_serializer=convert_pb2.RowsRequest.SerializeToString,
            response_deserializer=convert_pb2.Row.FromString,
        )

    request = convert_pb2.RowsRequest(count=3, colour=convert_pb2.COLOUR_RED)
    received = [row async for row in rows("Rows")(request, timeout=10)]
    assert [row.id for row in received] == ["r0", "r1", "r2"]
    assert [len(row.path) for row in received] == [0, 1, 2]
    assert received[2].position == convert_pb2.Point(x=2, y=-2)
    assert dict(received[1].labels) == {"n": "1"}
    assert {row.colour for row in received} == {convert_pb2.COLOUR_RED}
    assert received[0].at.ToDatetime(tzinfo=UTC) == WHEN
    raw = [row async for row in rows("RawRows")(request, timeout=10)]
    assert [(row.id, row.colour) for row in raw] == [("raw0", 1), ("raw1", 1), ("raw2", 1)]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        _ = [row async for row in rows("Rows")(convert_pb2.RowsRequest(count=1, colour=9), timeout=10)]
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "colour" in (raised.value.details() or "")
