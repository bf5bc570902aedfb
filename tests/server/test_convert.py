"""server.convert: protobuf <-> pydantic, planned once per RPC."""

from __future__ import annotations

import datetime
import typing

import pydantic
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2

from protos.orders.v1 import orders_pb2
from server.convert import BindingError, to_model, to_proto

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
    model = pydantic.create_model(
        "KeywordModel", **{"from": (str, ...), "class": (datetime.datetime | None, None)}
    )
    when = datetime.datetime(2026, 11, 27, tzinfo=UTC)
    message = to_proto(model, keywords)(model.model_validate({"from": "x", "class": when}))
    assert getattr(message, "from") == "x"
    assert getattr(message, "class").ToDatetime(tzinfo=UTC) == when
    back = to_model(keywords.DESCRIPTOR, model)(message)
    assert (getattr(back, "from"), getattr(back, "class")) == ("x", when)
