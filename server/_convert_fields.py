"""How one protobuf field and one pydantic field annotation fit together (the plans of server.convert).

Each field gets a :class:`Codec` for its values (an element of a repeated field or the value of a map
counts as a value): how protobuf's value is read into what the model validates, and a template of
the Python expression that turns the model's value into what the message constructor takes. A pair
that cannot fit raises :class:`BindingError` naming the field and why, when the RPC is bound.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
import enum
import types
import typing

import pydantic
from google.protobuf import duration_pb2, json_format, struct_pb2, timestamp_pb2, wrappers_pb2
from google.protobuf import message as proto_message

__all__ = [
    "EPOCH",
    "NAIVE_EPOCH",
    "BindingError",
    "Codec",
    "FieldDescriptor",
    "MessageDescriptor",
    "is_map",
    "is_timestamp",
    "map_annotations",
    "repeated_annotation",
    "strip",
    "synthetic_oneofs",
    "value_codec",
]

# protobuf's descriptors come from its C (upb) or Python implementation; both have the same shape.
MessageDescriptor: typing.TypeAlias = typing.Any
FieldDescriptor: typing.TypeAlias = typing.Any

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
NAIVE_EPOCH = datetime.datetime(1970, 1, 1)

_TIMESTAMP = timestamp_pb2.Timestamp.DESCRIPTOR.full_name
_DURATION = duration_pb2.Duration.DESCRIPTOR.full_name
_STRUCT = struct_pb2.Struct.DESCRIPTOR.full_name
_LIST_VALUE = struct_pb2.ListValue.DESCRIPTOR.full_name
_VALUE = struct_pb2.Value.DESCRIPTOR.full_name
_WRAPPERS: dict[str, type[proto_message.Message]] = {
    wrapper.DESCRIPTOR.full_name: wrapper
    for wrapper in (
        wrappers_pb2.DoubleValue,
        wrappers_pb2.FloatValue,
        wrappers_pb2.Int64Value,
        wrappers_pb2.UInt64Value,
        wrappers_pb2.Int32Value,
        wrappers_pb2.UInt32Value,
        wrappers_pb2.BoolValue,
        wrappers_pb2.StringValue,
        wrappers_pb2.BytesValue,
    )
}


class BindingError(TypeError):
    """A protobuf message and a pydantic model do not fit together."""


@dataclasses.dataclass(frozen=True)
class Codec:
    """How the values of one field cross between protobuf and the model.

    ``read``: protobuf's value -> the model's input (None: as protobuf gives it). ``write``: a
    template of a Python expression, ``{v}`` the model's value and ``{h}`` the name ``helper`` is
    bound to, giving what the message constructor takes (``"{v}"``: the value as is; it never sees
    None unless ``write`` is ``"{v}"``). ``nested``: the nested message's plan key, if any.
    """

    read: typing.Callable[[typing.Any], typing.Any] | None = None
    write: str = "{v}"
    helper: typing.Any = None
    nested: tuple[MessageDescriptor, type[pydantic.BaseModel]] | None = None
    takes_none: bool = False  # ``write`` maps None to None itself (an enum's table)

    @property
    def identity(self) -> bool:
        return self.read is None and self.write == "{v}"


_AS_IS = Codec()


def strip(annotation: typing.Any) -> tuple[typing.Any, bool]:
    """``annotation`` without ``Annotated[...]`` and ``| None``, and whether None was allowed."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if annotation is typing.Any:
        return annotation, True  # None included (a google.protobuf.Value field: None is unset)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = typing.get_args(annotation)
        rest = [member for member in members if member is not type(None)]
        if len(rest) == 1:
            inner, _ = strip(rest[0])
            return inner, len(rest) < len(members)
        return annotation, len(rest) < len(members)
    return annotation, False


def is_timestamp(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.full_name == _TIMESTAMP


def is_map(field: FieldDescriptor) -> bool:
    return bool(field.message_type is not None and field.message_type.GetOptions().map_entry)


def synthetic_oneofs(descriptor: MessageDescriptor) -> set[str]:
    """The names of the oneofs protoc made for proto3 ``optional`` fields (not real oneofs)."""
    from google.protobuf import descriptor_pb2

    proto = descriptor_pb2.DescriptorProto()
    descriptor.CopyToProto(proto)
    return {proto.oneof_decl[field.oneof_index].name for field in proto.field if field.proto3_optional}


def repeated_annotation(where: str, annotation: typing.Any) -> typing.Any:
    """The element annotation of a list-like model field."""
    origin = typing.get_origin(annotation)
    if annotation in (list, tuple, collections.abc.Sequence, typing.Any):
        return typing.Any
    if origin in (list, collections.abc.Sequence):
        return typing.get_args(annotation)[0]
    if origin is tuple:
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
    raise BindingError(f"{where} is repeated: the model needs a list[...], not {_name(annotation)}")


def map_annotations(where: str, annotation: typing.Any) -> tuple[typing.Any, typing.Any]:
    """The key and value annotations of a dict-like model field."""
    if annotation in (dict, collections.abc.Mapping, typing.Any):
        return typing.Any, typing.Any
    if typing.get_origin(annotation) in (dict, collections.abc.Mapping):
        key, value = typing.get_args(annotation)
        return key, value
    raise BindingError(f"{where} is a map: the model needs a dict[...], not {_name(annotation)}")


def value_codec(where: str, field: FieldDescriptor, annotation: typing.Any) -> Codec:
    """The codec of one value of ``field`` (an element, if it is repeated) for ``annotation``."""
    annotation, _ = strip(annotation)
    if field.enum_type is not None:
        return _enum_codec(where, field, annotation)
    if field.message_type is None:
        _check_scalar(where, field, annotation)
        return _AS_IS
    return _message_codec(where, field.message_type, annotation)


# -- scalars -----------------------------------------------------------------------------------------


def _scalar_types(field: FieldDescriptor) -> tuple[type, ...]:
    if field.type == field.TYPE_BYTES:
        return (bytes,)
    if field.cpp_type == field.CPPTYPE_STRING:
        return (str,)
    if field.cpp_type == field.CPPTYPE_BOOL:
        return (bool,)
    if field.cpp_type in (field.CPPTYPE_DOUBLE, field.CPPTYPE_FLOAT):
        return (float, int)
    return (int,)


def _check_scalar(where: str, field: FieldDescriptor, annotation: typing.Any) -> None:
    allowed = _scalar_types(field)
    if annotation is typing.Any:
        return
    if typing.get_origin(annotation) is typing.Literal:
        if all(isinstance(value, allowed) for value in typing.get_args(annotation)):
            return
    elif isinstance(annotation, type) and issubclass(annotation, allowed):
        return
    kind = "bytes" if allowed == (bytes,) else allowed[0].__name__
    raise BindingError(f"{where} holds {kind} values: the model's {_name(annotation)} cannot carry them")


# -- enums -------------------------------------------------------------------------------------------


def _enum_codec(where: str, field: FieldDescriptor, annotation: typing.Any) -> Codec:
    proto_enum = field.enum_type
    if annotation is int:
        return _AS_IS  # the number as is; proto3 enums are open, so any int32 is a valid value
    if not (isinstance(annotation, type) and issubclass(annotation, enum.Enum)):
        raise BindingError(
            f"{where} is the enum {proto_enum.full_name}: the model needs an enum.Enum whose member names "
            f"are its value names, or int, not {_name(annotation)}"
        )
    unknown = [member.name for member in annotation if member.name not in proto_enum.values_by_name]
    if unknown:
        raise BindingError(
            f"{where}: {annotation.__name__}.{', '.join(unknown)} has no value of that name in "
            f"{proto_enum.full_name}"
        )
    to_member = {
        value.number: annotation[value.name]
        for value in proto_enum.values
        if value.name in annotation.__members__
    }
    to_number: dict[typing.Any, int | None] = {
        member: proto_enum.values_by_name[member.name].number for member in annotation
    }
    to_number[None] = None  # an optional enum that is unset

    def read(number: int) -> typing.Any:
        # A number the model's enum has no member for stays a number, which pydantic then refuses
        # (INVALID_ARGUMENT naming the field).
        return to_member.get(number, number)

    return Codec(read=read, write="{h}[{v}]", helper=to_number, takes_none=True)


# -- messages ----------------------------------------------------------------------------------------


def _timestamp(value: datetime.datetime) -> timestamp_pb2.Timestamp:
    # What Timestamp.FromDatetime does (naive = UTC), in C-level datetime arithmetic (bench/README.md).
    delta = value - (EPOCH if value.tzinfo is not None else NAIVE_EPOCH)
    return timestamp_pb2.Timestamp(
        seconds=delta.days * 86400 + delta.seconds, nanos=delta.microseconds * 1000
    )


def _duration(value: datetime.timedelta) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromTimedelta(value)  # seconds and nanos of the same sign, as Duration requires
    return duration


def _struct(value: typing.Mapping[str, typing.Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


def _list_value(value: typing.Iterable[typing.Any]) -> struct_pb2.ListValue:
    values = struct_pb2.ListValue()
    values.extend(value)
    return values


def _value(value: typing.Any) -> struct_pb2.Value:
    return json_format.ParseDict(value, struct_pb2.Value())


def _as_python(message: proto_message.Message) -> typing.Any:
    return json_format.MessageToDict(message)


def _message_codec(where: str, message_type: MessageDescriptor, annotation: typing.Any) -> Codec:
    name = message_type.full_name
    if name == _TIMESTAMP:
        _require(where, name, annotation, datetime.datetime, "an aware datetime")
        return Codec(
            read=lambda stamp: stamp.ToDatetime(tzinfo=datetime.UTC), write="{h}({v})", helper=_timestamp
        )
    if name == _DURATION:
        _require(where, name, annotation, datetime.timedelta, "a timedelta")
        return Codec(read=lambda duration: duration.ToTimedelta(), write="{h}({v})", helper=_duration)
    if name in _WRAPPERS:
        value_field = message_type.fields_by_name["value"]
        _check_scalar(where, value_field, annotation)
        return Codec(read=lambda wrapper: wrapper.value, write="{h}(value={v})", helper=_WRAPPERS[name])
    if name == _STRUCT:
        _require_json(where, name, annotation, (dict, collections.abc.Mapping), "a dict")
        return Codec(read=_as_python, write="{h}({v})", helper=_struct)
    if name == _LIST_VALUE:
        _require_json(where, name, annotation, (list, tuple, collections.abc.Sequence), "a list")
        return Codec(read=_as_python, write="{h}({v})", helper=_list_value)
    if name == _VALUE:
        return Codec(read=_as_python, write="{h}({v})", helper=_value)  # any JSON value: no type to check
    if isinstance(annotation, type) and issubclass(annotation, proto_message.Message):
        if annotation.DESCRIPTOR.full_name != name:
            raise BindingError(f"{where} is a {name}, not a {annotation.DESCRIPTOR.full_name}")
        return _AS_IS  # the generated class itself: the message as is (the constructor copies it)
    if not (isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel)):
        raise BindingError(
            f"{where} is the message {name}: the model needs a pydantic model for it, not {_name(annotation)}"
        )
    return Codec(write="{h}({v})", nested=(message_type, annotation))


def _require(where: str, proto: str, annotation: typing.Any, expected: type, what: str) -> None:
    if not (isinstance(annotation, type) and issubclass(annotation, expected)):
        raise BindingError(f"{where} is a {proto}: the model needs {what}, not {_name(annotation)}")


def _require_json(
    where: str, proto: str, annotation: typing.Any, expected: tuple[type, ...], what: str
) -> None:
    bare = typing.get_origin(annotation) or annotation
    if annotation is not typing.Any and not (isinstance(bare, type) and issubclass(bare, expected)):
        raise BindingError(f"{where} is a {proto}: the model needs {what}, not {_name(annotation)}")


def _name(annotation: typing.Any) -> str:
    return annotation.__name__ if isinstance(annotation, type) else repr(annotation)
