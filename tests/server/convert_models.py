"""Pydantic models for tests/server/protos/convert_test/v1/convert.proto, field by field."""

from __future__ import annotations

import datetime
import enum
import typing

import pydantic

import mediator


class Colour(enum.Enum):
    """Member names are the proto's value names; the values are the model's own business."""

    COLOUR_UNSPECIFIED = "unspecified"
    COLOUR_RED = "red"
    COLOUR_GREEN = "green"


class Point(pydantic.BaseModel):
    x: int = 0
    y: int = 0
    label: str = ""


class Line(pydantic.BaseModel):
    start: Point | None = None
    end: Point | None = None
    colour: Colour = Colour.COLOUR_UNSPECIFIED


class EverythingFields(pydantic.BaseModel):
    text: str = ""
    small: int = 0
    big: int = 0
    unsigned: int = 0
    real: float = 0.0
    single: float = 0.0
    flag: bool = False
    blob: bytes = b""
    maybe_text: str | None = None
    maybe_number: int | None = None
    tags: list[str] = []
    numbers: list[int] = []
    point: Point | None = None
    points: list[Point] = []
    line: Line | None = None
    counts: dict[str, int] = {}
    points_by_id: dict[int, Point] = {}
    colours_by_name: dict[str, Colour] = {}
    colour: Colour = Colour.COLOUR_UNSPECIFIED
    colours: list[Colour] = []
    colour_number: int = 0
    choice_text: str | None = None
    choice_point: Point | None = None
    choice_number: int | None = None
    at: datetime.datetime | None = None
    ats: list[datetime.datetime] = []
    took: datetime.timedelta | None = None
    maybe_int: int | None = None
    maybe_string: str | None = None
    maybe_bool: bool | None = None
    maybe_bytes: bytes | None = None
    maybe_double: float | None = None
    attributes: dict[str, typing.Any] | None = None
    anything: typing.Any = None
    items: list[typing.Any] | None = None
    stamps_by_name: dict[str, datetime.datetime] = {}


class EverythingRequest(mediator.Request, EverythingFields):
    pass


class EverythingResponse(mediator.Response, EverythingFields):
    pass


class Tree(pydantic.BaseModel):
    name: str
    children: list[Tree] = []


class RowsRequest(mediator.Request):
    count: int = pydantic.Field(ge=0, le=1000)
    colour: Colour = Colour.COLOUR_UNSPECIFIED


class Row(mediator.Response):
    id: str
    position: Point
    path: list[Point]
    labels: dict[str, str]
    colour: Colour
    at: datetime.datetime
