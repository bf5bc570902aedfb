"""Conversion cost per item of a nested message: server.convert vs a hand-written conversion.

The message is tests/server's ``convert_test.v1.Row`` (compiled into a temporary directory): a string,
a nested ``Point``, ``--path`` repeated ``Point``s, a ``map<string, string>`` of 2 labels, an enum and
a ``Timestamp``. Each way runs ``--number`` conversions per round, ``--rounds`` rounds interleaved;
the figure is the fastest round (timeit's advice: the others are the machine's noise), in µs per item.

- model -> message (every streamed item): ``to_proto`` (the generated converter), a hand-written
  function doing what a person would write for this message, and a plain loop over the same plan
  (``getattr`` per field, a kwargs dict, one callable per field, nested messages by recursion): what
  the generated code would be replaced by if it went.
- message -> model (once per request): ``to_model`` (one dict for the whole message, one pydantic
  validation) vs a hand-written dict of the same values validated the same way.

Before timing, every way's result is checked equal to the others'.
"""

from __future__ import annotations

import argparse
import datetime
import pathlib
import tempfile
import timeit
import typing

from google.protobuf import message_factory

from bench import _common
from server import convert
from server._convert_fields import EPOCH
from tests.protoc import compile_protos
from tests.server.convert_models import Colour, Point, Row

WHEN = datetime.datetime(2026, 11, 27, 14, 43, 43, 123456, tzinfo=datetime.UTC)


def _row(path: int) -> Row:
    return Row(
        id="row-1",
        position=Point(x=1, y=2, label="here"),
        path=[Point(x=step, y=-step, label=f"p{step}") for step in range(path)],
        labels={"region": "eu", "kind": "export"},
        colour=Colour.COLOUR_GREEN,
        at=WHEN,
    )


def _hand_written(pb: typing.Any) -> typing.Callable[[Row], typing.Any]:
    numbers = {colour: pb.Colour.Value(colour.name) for colour in Colour}

    def to_message(item: Row) -> typing.Any:
        position = item.position
        message = pb.Row(
            id=item.id,
            position=pb.Point(x=position.x, y=position.y, label=position.label),
            path=[pb.Point(x=point.x, y=point.y, label=point.label) for point in item.path],
            labels=item.labels,
            colour=numbers[item.colour],
        )
        delta = item.at - EPOCH
        message.at.seconds = delta.days * 86400 + delta.seconds
        message.at.nanos = delta.microseconds * 1000
        return message

    return to_message


def _plain_loop(descriptor: typing.Any, model: type[typing.Any]) -> typing.Callable[[typing.Any], typing.Any]:
    """The same plan as to_proto, run by a loop instead of generated code."""
    plan = convert._plan(descriptor, model, reading=False)
    message_class = message_factory.GetMessageClass(descriptor)
    steps: list[tuple[str, str, typing.Callable[[typing.Any], typing.Any] | None]] = []
    for field in plan.fields:
        codec = field.codec
        each: typing.Callable[[typing.Any], typing.Any] | None
        if codec.nested is not None:
            each = _plain_loop(*codec.nested)
        elif codec.identity:
            each = None
        elif codec.write == "{h}[{v}]":
            each = codec.helper.__getitem__
        else:
            each = codec.helper
        steps.append((field.name, field.shape, each))

    def to_message(item: typing.Any) -> typing.Any:
        values: dict[str, typing.Any] = {}
        for name, shape, each in steps:
            value = getattr(item, name)
            if value is None or each is None:
                values[name] = value
            elif shape == "repeated":
                values[name] = [each(element) for element in value]
            elif shape == "map":
                values[name] = {key: each(element) for key, element in value.items()}
            else:
                values[name] = each(value)
        return message_class(**values)

    return to_message


def _hand_read(message: typing.Any) -> Row:
    position = message.position
    return typing.cast(
        Row,
        Row.__pydantic_validator__.validate_python(
            {
                "id": message.id,
                "position": {"x": position.x, "y": position.y, "label": position.label},
                "path": [{"x": point.x, "y": point.y, "label": point.label} for point in message.path],
                "labels": dict(message.labels),
                "colour": Colour[
                    message.DESCRIPTOR.fields_by_name["colour"]
                    .enum_type.values_by_number[message.colour]
                    .name
                ],
                "at": message.at.ToDatetime(tzinfo=datetime.UTC),
            }
        ),
    )


def _measure(ways: dict[str, typing.Callable[[], typing.Any]], number: int, rounds: int) -> dict[str, float]:
    best = dict.fromkeys(ways, float("inf"))
    for _ in range(rounds):
        for name, way in ways.items():  # interleaved: noise hits every way alike
            best[name] = min(best[name], timeit.timeit(way, number=number) / number * 1e6)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=int, default=4, help="Points in the row's repeated field")
    parser.add_argument("--number", type=int, default=20_000, help="conversions per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as out:
        source = _common.REPO / "tests" / "server" / "protos"
        (pb,) = compile_protos(source, pathlib.Path(out), "convert_test.v1.convert_pb2")
    item = _row(args.path)
    generated = convert.to_proto(Row, pb.Row)
    hand = _hand_written(pb)
    loop = _plain_loop(pb.Row.DESCRIPTOR, Row)
    message = generated(item)
    if not (message == hand(item) == loop(item)):
        raise AssertionError("the ways of converting disagree")
    to_model = convert.to_model(pb.Row.DESCRIPTOR, Row)
    if not (to_model(message) == _hand_read(message) == item):
        raise AssertionError("the ways of reading disagree")

    print("\n".join(_common.environment(("pydantic", "pydantic-core", "protobuf"))))
    print(f"runs:     {args.number:,} conversions per round, {args.rounds} rounds interleaved, fastest round")
    print(f"message:  convert_test.v1.Row with {args.path} Points in path ({message.ByteSize()} bytes)")
    print("checked:  every way gives the same message (and the same model back)\n")
    out_times = _measure(
        {
            "to_proto (generated)": lambda: generated(item),
            "hand-written": lambda: hand(item),
            "plain loop over the plan": lambda: loop(item),
        },
        args.number,
        args.rounds,
    )
    in_times = _measure(
        {"to_model": lambda: to_model(message), "hand-written": lambda: _hand_read(message)},
        args.number,
        args.rounds,
    )
    rows = [
        ["model -> message", name, f"{value:.2f}", f"{value / out_times['hand-written']:.2f}"]
        for name, value in out_times.items()
    ]
    rows += [
        ["message -> model", name, f"{value:.2f}", f"{value / in_times['hand-written']:.2f}"]
        for name, value in in_times.items()
    ]
    print(_common.table(["direction", "way", "µs/item", "x hand"], rows, left=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
