"""Protobuf <-> pydantic, in one place.

A converter is planned once per (protobuf message, pydantic model) pair when an RPC is bound, and
checked then: a protobuf field the model cannot carry is an error at start-up, not a surprise in the
middle of a stream. ``google.protobuf.Timestamp`` maps to an aware ``datetime`` (UTC).
"""

from __future__ import annotations

import datetime
import keyword
import typing

import pydantic
from google.protobuf import message as proto_message
from google.protobuf import timestamp_pb2

__all__ = ["BindingError", "ToModel", "ToProto", "to_model", "to_proto"]

ModelT = typing.TypeVar("ModelT", bound=pydantic.BaseModel)
ToModel: typing.TypeAlias = typing.Callable[[proto_message.Message], pydantic.BaseModel]
ToProto: typing.TypeAlias = typing.Callable[[pydantic.BaseModel], proto_message.Message]

_TIMESTAMP = timestamp_pb2.Timestamp.DESCRIPTOR.full_name
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_NAIVE_EPOCH = datetime.datetime(1970, 1, 1)

# protobuf's descriptors come from its C (upb) or Python implementation; both have the same shape.
Descriptor: typing.TypeAlias = typing.Any
FieldDescriptor: typing.TypeAlias = typing.Any


class BindingError(TypeError):
    """A protobuf message and a pydantic model do not fit together."""


def _is_timestamp(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.full_name == _TIMESTAMP


def _check_fields(descriptor: Descriptor, model: type[pydantic.BaseModel]) -> None:
    missing = [field.name for field in descriptor.fields if field.name not in model.model_fields]
    if missing:
        raise BindingError(
            f"{model.__qualname__} has no field for {descriptor.full_name}.{', '.join(missing)}"
        )
    for field in descriptor.fields:
        if field.message_type is not None and not _is_timestamp(field):
            raise BindingError(
                f"{descriptor.full_name}.{field.name}: only scalar, repeated scalar and Timestamp fields "
                "are supported"
            )


def to_model(descriptor: Descriptor, model: type[ModelT]) -> typing.Callable[[proto_message.Message], ModelT]:
    """Plan ``proto message -> model`` (validation by pydantic: ``ValidationError`` on bad input).

    Every field is passed as protobuf reads it (proto3 defaults included), but for an unset Timestamp,
    which is left out so that the model's own default or requirement applies.
    """
    _check_fields(descriptor, model)
    fields = tuple(descriptor.fields)
    scalars = tuple(f.name for f in fields if not f.is_repeated and not _is_timestamp(f))
    repeated = tuple(f.name for f in fields if f.is_repeated and not _is_timestamp(f))
    stamps = tuple(f.name for f in fields if not f.is_repeated and _is_timestamp(f))
    repeated_stamps = tuple(f.name for f in fields if f.is_repeated and _is_timestamp(f))
    # model_validate's own Python wrapper costs a third of a small request's validation.
    validate = model.__pydantic_validator__.validate_python

    def convert(message: proto_message.Message) -> ModelT:
        values = {name: getattr(message, name) for name in scalars}
        for name in repeated:
            values[name] = getattr(message, name)[:]  # a list; slicing is cheaper than list() on upb
        for name in stamps:
            if message.HasField(name):
                values[name] = getattr(message, name).ToDatetime(tzinfo=datetime.UTC)
        for name in repeated_stamps:
            values[name] = [stamp.ToDatetime(tzinfo=datetime.UTC) for stamp in getattr(message, name)]
        return typing.cast(ModelT, validate(values))

    return convert


def to_proto(
    model: type[pydantic.BaseModel], message_class: type[proto_message.Message]
) -> typing.Callable[[pydantic.BaseModel], proto_message.Message]:
    """Plan ``model -> proto message``; the hot path of every stream, so it does the least per item."""
    descriptor = message_class.DESCRIPTOR
    _check_fields(descriptor, model)
    plain = tuple(field.name for field in descriptor.fields if not _is_timestamp(field))
    stamps = tuple(
        field.name for field in descriptor.fields if _is_timestamp(field) and not field.is_repeated
    )
    if any(_is_timestamp(field) and field.is_repeated for field in descriptor.fields):
        raise BindingError(
            f"{descriptor.full_name}: repeated Timestamp fields are not supported in responses"
        )

    return _compile_to_proto(message_class, plain, stamps)


def _compile_to_proto(
    message_class: type[proto_message.Message], plain: tuple[str, ...], stamps: tuple[str, ...]
) -> typing.Callable[[pydantic.BaseModel], proto_message.Message]:
    """The converter as straight-line Python, generated once per RPC (as ``dataclasses`` generates
    ``__init__``): a loop over field names and a kwargs dict per item cost a quarter of the
    conversion, on the path every streamed item takes (bench/README.md, "Profile")."""

    def read(name: str) -> str:
        return f"item.{name}" if _plain_name(name) else f"getattr(item, {name!r})"

    arguments = ", ".join(
        f"{name}={read(name)}" if _plain_name(name) else f"**{{{name!r}: {read(name)}}}" for name in plain
    )
    lines = ["def convert(item):", f"    message = message_class({arguments})"]
    for name in stamps:
        # What Timestamp.FromDatetime does (naive = UTC), in C-level datetime arithmetic:
        # 2.5 instead of 5.6 us per item.
        lines += [
            f"    value = {read(name)}",
            "    if value is not None:",
            "        delta = value - (_EPOCH if value.tzinfo is not None else _NAIVE_EPOCH)",
            f"        stamp = {'message.' + name if _plain_name(name) else f'getattr(message, {name!r})'}",
            "        stamp.seconds = delta.days * 86400 + delta.seconds",
            "        stamp.nanos = delta.microseconds * 1000",
        ]
    lines.append("    return message")
    namespace: dict[str, typing.Any] = {
        "message_class": message_class,
        "_EPOCH": _EPOCH,
        "_NAIVE_EPOCH": _NAIVE_EPOCH,
    }
    # Only descriptor field names reach the source, each checked by _plain_name or quoted with repr.
    source = compile("\n".join(lines), f"<to_proto {message_class.DESCRIPTOR.full_name}>", "exec")
    exec(source, namespace)
    return typing.cast(typing.Callable[[pydantic.BaseModel], proto_message.Message], namespace["convert"])


def _plain_name(name: str) -> bool:
    """Usable as ``item.name`` and ``name=`` in generated code (a .proto field may be ``from``)."""
    return name.isidentifier() and not keyword.iskeyword(name)
