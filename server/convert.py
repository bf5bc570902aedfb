"""Protobuf <-> pydantic, in one place: the whole of proto3, field by field.

A converter is planned once per (protobuf message, pydantic model) pair when an RPC is bound, and
checked then: a field the model cannot carry is a :class:`BindingError` at start-up naming the field
and why, not a surprise in the middle of a stream. The model has a field of the same name for every
field of the message; what each field kind maps to:

=============================================  ==============================================
protobuf                                       model field
=============================================  ==============================================
scalars, ``bytes``                             ``str``, ``int``, ``float``, ``bool``, ``bytes``
``optional`` scalar                            ``X | None`` (None: unset)
message                                        a pydantic model (``M | None``: may be unset),
                                               or the generated message class itself
``repeated`` X                                 ``list[X]``
``map<K, V>``                                  ``dict[K, V]`` (V scalar, enum or message)
enum                                           an ``enum.Enum`` whose member names are the
                                               proto's value names, or ``int``
``oneof``                                      each member ``X | None = None``; at most one set
``google.protobuf.Timestamp``                  ``datetime`` (read as aware UTC; naive = UTC)
``google.protobuf.Duration``                   ``timedelta``
wrappers (``Int32Value``, ``StringValue``...)  ``X | None``
``Struct`` / ``ListValue`` / ``Value``         ``dict`` / ``list`` / any JSON value
=============================================  ==============================================

A response may also be the RPC's generated message class itself: items are then written as they are.

Oneofs: on the way in, protobuf's own decoding keeps the last member on the wire, so a message never
has two; a model built from something else (JSON) is checked by :func:`oneof_check` (INVALID_ARGUMENT).
On the way out, what bind time can know is the model's types: every member must be optional with a
None default (else "unset" cannot be said). Whether an item sets two is known only per item: the
converter raises :class:`OneofConflict` (INTERNAL for the caller) rather than let protobuf keep one.

The two directions are each one code path. ``message -> model`` (once per request) builds the
dict of the whole request, nested messages included, and validates it with one pydantic call.
``model -> message`` (every streamed item) is generated once per message type as straight-line
Python, as ``dataclasses`` generates ``__init__``: a loop over field names and a kwargs dict per item
cost a quarter of the conversion (bench/README.md, "Profile"; "Conversion" for nested messages).
"""

from __future__ import annotations

import dataclasses
import keyword
import operator
import typing

import pydantic
from google.protobuf import message as proto_message
from google.protobuf import message_factory

from server._convert_fields import (
    EPOCH,
    NAIVE_EPOCH,
    BindingError,
    Codec,
    FieldDescriptor,
    MessageDescriptor,
    is_map,
    is_timestamp,
    map_annotations,
    repeated_annotation,
    strip,
    synthetic_oneofs,
    value_codec,
)
from server.errors import FieldViolation, InvalidArgument

__all__ = [
    "BindingError",
    "OneofConflict",
    "ToModel",
    "ToProto",
    "oneof_check",
    "to_model",
    "to_proto",
]

ModelT = typing.TypeVar("ModelT", bound=pydantic.BaseModel)
ToModel: typing.TypeAlias = typing.Callable[[proto_message.Message], pydantic.BaseModel]
ToProto: typing.TypeAlias = typing.Callable[[typing.Any], proto_message.Message]
Model: typing.TypeAlias = type[pydantic.BaseModel]


class OneofConflict(ValueError):
    """An item to be written sets more than one member of a oneof."""


@dataclasses.dataclass(frozen=True)
class _Field:
    name: str
    shape: typing.Literal["singular", "repeated", "map"]
    codec: Codec
    presence: bool  # singular, and protobuf tells set from unset (HasField)
    optional: bool  # the model's field allows None


@dataclasses.dataclass(frozen=True)
class _Plan:
    descriptor: MessageDescriptor
    model: Model
    fields: tuple[_Field, ...]
    oneofs: tuple[tuple[str, tuple[str, ...]], ...]  # (oneof name, its members)


def _plan(descriptor: MessageDescriptor, model: Model, *, reading: bool) -> _Plan:
    """Check the pair and say, per field, how it converts (``reading``: message -> model)."""
    if not (isinstance(model, type) and issubclass(model, pydantic.BaseModel)):
        raise BindingError(f"{descriptor.full_name}: {model!r} is not a pydantic model")
    model_fields = model.model_fields
    missing = [field.name for field in descriptor.fields if field.name not in model_fields]
    if missing:
        raise BindingError(
            f"{model.__qualname__} has no field for {descriptor.full_name}.{', '.join(missing)}"
        )
    if reading:
        names = {field.name for field in descriptor.fields}
        extra = [name for name, info in model_fields.items() if info.is_required() and name not in names]
        if extra:
            raise BindingError(
                f"{model.__qualname__}.{', '.join(extra)}: required, and not in {descriptor.full_name}"
            )
    synthetic = synthetic_oneofs(descriptor)
    oneofs = tuple(
        (oneof.name, tuple(field.name for field in oneof.fields))
        for oneof in descriptor.oneofs
        if oneof.name not in synthetic
    )
    for oneof, members in oneofs:
        for name in members:
            info = model_fields[name]
            if not strip(info.annotation)[1] or info.is_required() or info.default is not None:
                raise BindingError(
                    f"{descriptor.full_name}.{name} is a member of oneof {oneof}: the model's field must be "
                    "optional with a None default (X | None = None)"
                )
    fields = tuple(
        _field(descriptor, field, model_fields[field.name].annotation) for field in descriptor.fields
    )
    return _Plan(descriptor, model, fields, oneofs)


def _field(descriptor: MessageDescriptor, field: FieldDescriptor, annotation: typing.Any) -> _Field:
    where = f"{descriptor.full_name}.{field.name}"
    annotation, optional = strip(annotation)
    if is_map(field):
        key_annotation, value_annotation = map_annotations(where, annotation)
        entry = field.message_type
        value_codec(f"{where} (key)", entry.fields_by_name["key"], key_annotation)
        codec = value_codec(f"{where} (value)", entry.fields_by_name["value"], value_annotation)
        return _Field(field.name, "map", codec, presence=False, optional=optional)
    if field.is_repeated:
        codec = value_codec(where, field, repeated_annotation(where, annotation))
        return _Field(field.name, "repeated", codec, presence=False, optional=optional)
    codec = value_codec(where, field, annotation)
    return _Field(field.name, "singular", codec, presence=field.has_presence, optional=optional)


# -- message -> model ----------------------------------------------------------------------------

_Reader: typing.TypeAlias = typing.Callable[[proto_message.Message], dict[str, typing.Any]]
_slice = operator.itemgetter(slice(None))  # a list of a repeated field: slicing is cheapest on upb


def to_model(
    descriptor: MessageDescriptor, model: type[ModelT]
) -> typing.Callable[[proto_message.Message], ModelT]:
    """Plan ``proto message -> model`` (validation by pydantic: ``ValidationError`` on bad input).

    Fields are passed as protobuf reads them (proto3 defaults included), but for fields protobuf
    knows to be unset (messages, ``optional`` scalars, oneof members, well-known types): those are
    left out so that the model's own default or requirement applies.
    """
    to_dict = _reader(descriptor, model, {})
    # model_validate's own Python wrapper costs a third of a small request's validation.
    validate = model.__pydantic_validator__.validate_python

    def convert(message: proto_message.Message) -> ModelT:
        return typing.cast(ModelT, validate(to_dict(message)))

    return convert


def _reader(descriptor: MessageDescriptor, model: Model, done: dict[tuple[str, Model], _Reader]) -> _Reader:
    key = (descriptor.full_name, model)
    if key in done:
        return done[key]
    cell: list[_Reader] = []
    done[key] = lambda message: cell[0](message)  # a recursive message reads through this until built
    plan = _plan(descriptor, model, reading=True)
    plain = tuple(
        f.name for f in plan.fields if f.shape == "singular" and not f.presence and f.codec.identity
    )
    others = tuple(
        (f.name, f.presence, _read(f, done))
        for f in plan.fields
        if not (f.shape == "singular" and not f.presence and f.codec.identity)
    )

    def to_dict(message: proto_message.Message) -> dict[str, typing.Any]:
        values = {name: getattr(message, name) for name in plain}
        for name, presence, read in others:
            if presence and not message.HasField(name):
                continue
            values[name] = read(getattr(message, name))
        return values

    cell.append(to_dict)
    done[key] = to_dict
    return to_dict


def _read(field: _Field, done: dict[tuple[str, Model], _Reader]) -> typing.Callable[[typing.Any], typing.Any]:
    codec = field.codec
    value: typing.Callable[[typing.Any], typing.Any] | None = codec.read
    if codec.nested is not None:
        value = _reader(*codec.nested, done)
    if field.shape == "repeated":
        if value is None:
            return _slice
        each = value
        return lambda values: [each(item) for item in values]
    if field.shape == "map":
        if value is None:
            return dict
        each = value
        return lambda values: {key: each(item) for key, item in values.items()}
    return value if value is not None else _same


def _same(value: typing.Any) -> typing.Any:
    return value


def oneof_check(descriptor: MessageDescriptor, model: Model) -> typing.Callable[[pydantic.BaseModel], None]:
    """A check that a model instance sets at most one member of each oneof, nested messages included
    (``InvalidArgument`` naming the members otherwise): for models built from JSON, not protobuf."""
    plans: dict[tuple[str, Model], _Plan] = {}

    def plan_of(descriptor: MessageDescriptor, model: Model) -> _Plan:
        key = (descriptor.full_name, model)
        if key not in plans:
            plans[key] = _plan(descriptor, model, reading=True)
            for field in plans[key].fields:
                if field.codec.nested is not None:
                    plan_of(*field.codec.nested)
        return plans[key]

    top = plan_of(descriptor, model)

    def check(item: pydantic.BaseModel) -> None:
        violations = list(_oneof_violations(plans, top, item, ""))
        if violations:
            raise InvalidArgument(violations)

    return check


def _oneof_violations(
    plans: dict[tuple[str, Model], _Plan], plan: _Plan, item: typing.Any, prefix: str
) -> typing.Iterator[FieldViolation]:
    for oneof, members in plan.oneofs:
        chosen = [name for name in members if getattr(item, name) is not None]
        if len(chosen) > 1:
            for name in chosen:
                yield FieldViolation(
                    f"{prefix}{name}", f"only one of {', '.join(members)} (oneof {oneof}) may be set"
                )
    for field in plan.fields:
        if field.codec.nested is None or (value := getattr(item, field.name)) is None:
            continue
        nested_descriptor, nested_model = field.codec.nested
        nested = plans[(nested_descriptor.full_name, nested_model)]
        if field.shape == "singular":
            yield from _oneof_violations(plans, nested, value, f"{prefix}{field.name}.")
        else:
            entries = value.items() if field.shape == "map" else enumerate(value)
            for index, entry in entries:
                yield from _oneof_violations(plans, nested, entry, f"{prefix}{field.name}[{index!r}].")


# -- model -> message ----------------------------------------------------------------------------


def to_proto(model: type[typing.Any], message_class: type[proto_message.Message]) -> ToProto:
    """Plan ``model -> proto message``; the hot path of every stream, so it does the least per item.

    ``model`` may be the generated ``message_class`` itself: items are then written as they are.
    """
    if isinstance(model, type) and issubclass(model, proto_message.Message):
        if model.DESCRIPTOR.full_name != message_class.DESCRIPTOR.full_name:
            raise BindingError(
                f"the response is a {message_class.DESCRIPTOR.full_name}, not a {model.DESCRIPTOR.full_name}"
            )
        return _same
    return _writer(message_class.DESCRIPTOR, model, message_class, {})


def _writer(
    descriptor: MessageDescriptor,
    model: Model,
    message_class: type[proto_message.Message] | None,
    done: dict[tuple[str, Model], ToProto],
) -> ToProto:
    key = (descriptor.full_name, model)
    if key in done:
        return done[key]
    namespace: dict[str, typing.Any] = {
        "message_class": message_class or message_factory.GetMessageClass(descriptor),
        "_EPOCH": EPOCH,
        "_NAIVE_EPOCH": NAIVE_EPOCH,
        "_conflict": OneofConflict,
    }
    done[key] = lambda item: namespace["convert"](item)  # a recursive message writes through this
    plan = _plan(descriptor, model, reading=False)
    for index, field in enumerate(plan.fields):
        if field.codec.nested is not None:
            namespace[f"_h{index}"] = _writer(*field.codec.nested, None, done)
        elif field.codec.helper is not None:
            namespace[f"_h{index}"] = field.codec.helper
    source = "\n".join(_source(plan))
    # Only descriptor field names reach the source, each checked by _plain_name or quoted with repr.
    exec(compile(source, f"<to_proto {descriptor.full_name}>", "exec"), namespace)
    convert = typing.cast(ToProto, namespace["convert"])
    done[key] = convert
    return convert


def _source(plan: _Plan) -> typing.Iterator[str]:
    """The generated converter: one keyword argument per field, Timestamps set in place after."""
    yield "def convert(item):"
    for oneof, members in plan.oneofs:
        chosen = " + ".join(f"({_get('item', name)} is not None)" for name in members)
        message = f"{plan.descriptor.full_name}: more than one of {', '.join(members)} (oneof {oneof}) is set"
        yield f"    if {chosen} > 1:"
        yield f"        raise _conflict({message!r})"
    arguments = []
    stamps = []
    for index, field in enumerate(plan.fields):
        if field.shape == "singular" and is_timestamp(plan.descriptor.fields_by_name[field.name]):
            stamps.append(field.name)
            continue
        value = _value(field, _get("item", field.name), f"_h{index}")
        arguments.append(
            f"{field.name}={value}" if _plain_name(field.name) else f"**{{{field.name!r}: {value}}}"
        )
    yield f"    message = message_class({', '.join(arguments)})"
    for name in stamps:
        # In place: Timestamp(...) as a constructor argument would be built, then copied (+1 us).
        yield f"    value = {_get('item', name)}"
        yield "    if value is not None:"
        yield "        delta = value - (_EPOCH if value.tzinfo is not None else _NAIVE_EPOCH)"
        yield f"        stamp = {_get('message', name)}"
        yield "        stamp.seconds = delta.days * 86400 + delta.seconds"
        yield "        stamp.nanos = delta.microseconds * 1000"
    yield "    return message"


def _value(field: _Field, read: str, helper: str) -> str:
    """The expression for one constructor argument (None leaves the field unset)."""
    if field.codec.identity:
        return read  # the constructor takes scalars, lists, dicts, messages and None as they are
    write = field.codec.write
    if field.shape == "repeated":
        return f"[{write.format(v='_each', h=helper)} for _each in {read}]"
    if field.shape == "map":
        return f"{{_key: {write.format(v='_each', h=helper)} for _key, _each in {read}.items()}}"
    if not field.optional or field.codec.takes_none:
        return write.format(v=read, h=helper)
    return f"(None if (_v := {read}) is None else {write.format(v='_v', h=helper)})"


def _get(owner: str, name: str) -> str:
    return f"{owner}.{name}" if _plain_name(name) else f"getattr({owner}, {name!r})"


def _plain_name(name: str) -> bool:
    """Usable as ``item.name`` and ``name=`` in generated code (a .proto field may be ``from``)."""
    return name.isidentifier() and not keyword.iskeyword(name)
