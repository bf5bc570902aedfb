"""InventoryService on the rill platform: ``python -m server --app examples.inventory.app:services``.

``Restock`` streams one ``StockLevel`` per line as it is booked and emits a ``StockBooked`` event per
line; its handler records the level in the ``Stock`` book, which ``GetStock`` reads, so a client that
reads a level back sees what the event handler did (strict delivery). Nested messages (``Location``),
an enum (``Priority``) and a map (``labels``) travel both ways. Event processing follows
``[services.inventory]`` in the settings.
"""

from __future__ import annotations

import collections
import enum
import typing

import pydantic

import mediator
from examples.inventory.v1 import inventory_pb2
from mediator import bootstrap
from server import Rpc, ServiceBinding, Settings
from server.exceptions import NotFound

MAX_LINES = 1_000
MAX_SKUS = 100_000  # the book keeps at most this many SKUs (oldest booked first out)


class Priority(enum.Enum):
    """The proto's enum: member names are its value names."""

    PRIORITY_UNSPECIFIED = 0
    PRIORITY_NORMAL = 1
    PRIORITY_URGENT = 2


class Location(pydantic.BaseModel):
    warehouse: str = pydantic.Field(min_length=1, max_length=64)
    bin: str = pydantic.Field(max_length=64)


class Line(pydantic.BaseModel):
    sku: str = pydantic.Field(min_length=1, max_length=64)
    quantity: int = pydantic.Field(ge=1, le=1_000_000)
    location: Location


class StockLevel(mediator.Response):
    sku: str
    on_hand: int
    location: Location | None
    priority: Priority
    labels: dict[str, str]


class Restock(mediator.Request[StockLevel]):
    lines: list[Line] = pydantic.Field(min_length=1, max_length=MAX_LINES)
    priority: Priority
    labels: dict[str, str] = pydantic.Field(max_length=32)


class GetStock(mediator.Request[StockLevel]):
    sku: str = pydantic.Field(min_length=1, max_length=64)


class StockBooked(mediator.DomainEvent, frozen=True):
    level: StockLevel


class Stock:
    """Stock levels by SKU, bounded: the SKUs booked longest ago go first beyond ``limit``."""

    def __init__(self, limit: int = MAX_SKUS) -> None:
        self.limit = limit
        self._levels: collections.OrderedDict[str, StockLevel] = collections.OrderedDict()

    def on_hand(self, sku: str) -> int:
        level = self._levels.get(sku)
        return level.on_hand if level is not None else 0

    def record(self, level: StockLevel) -> None:
        self._levels[level.sku] = level
        self._levels.move_to_end(level.sku)
        while len(self._levels) > self.limit:
            self._levels.popitem(last=False)

    def get(self, sku: str) -> StockLevel:
        level = self._levels.get(sku)
        if level is None:
            raise NotFound(f"no stock was ever booked for {sku!r}")
        return level


class RestockHandler(mediator.StreamingRequestHandler[Restock, StockLevel]):
    def __init__(self, stock: Stock) -> None:
        self._events: list[mediator.Event] = []
        self._stock = stock
        self._booked: dict[str, int] = {}

    async def handle(self, request: Restock) -> typing.AsyncIterator[StockLevel]:
        for line in request.lines:
            # Lines of one request that name the same SKU add up before the book has them.
            on_hand = self._booked.get(line.sku, self._stock.on_hand(line.sku)) + line.quantity
            self._booked[line.sku] = on_hand
            level = StockLevel(
                sku=line.sku,
                on_hand=on_hand,
                location=line.location,
                priority=request.priority,
                labels=request.labels,
            )
            self._events.append(StockBooked(level=level))
            yield level


class StockBookedHandler(mediator.EventHandler[StockBooked]):
    def __init__(self, stock: Stock) -> None:
        self._stock = stock

    async def handle(self, event: StockBooked) -> None:
        self._stock.record(event.level)


class GetStockHandler(mediator.RequestHandler[GetStock, StockLevel]):
    def __init__(self, stock: Stock) -> None:
        self._stock = stock

    async def handle(self, request: GetStock) -> StockLevel:
        return self._stock.get(request.sku)


class Handlers:
    """The app's container: one ``Stock`` shared by every handler (``async def resolve``)."""

    def __init__(self) -> None:
        self.stock = Stock()

    async def resolve(self, type_: type[typing.Any]) -> typing.Any:
        return type_(self.stock)


def commands(mapper: mediator.RequestMap) -> None:
    mapper.bind(Restock, RestockHandler)
    mapper.bind(GetStock, GetStockHandler)


def events(mapper: mediator.EventMap) -> None:
    mapper.bind(StockBooked, StockBookedHandler)


def services(settings: Settings) -> list[ServiceBinding]:
    """The app's bindings for ``settings`` (its section: ``[services.inventory]``)."""
    options = settings.service("inventory")
    handlers = Handlers()
    return [
        ServiceBinding(
            inventory_pb2.DESCRIPTOR.services_by_name["InventoryService"],
            streaming=bootstrap.bootstrap_streaming(
                di_container=handlers,
                commands_mapper=commands,
                domain_events_mapper=events,
                **options.streaming_options(),
            ),
            unary=bootstrap.bootstrap(
                di_container=handlers, commands_mapper=commands, **options.unary_options()
            ),
            rpcs=[Rpc("Restock", Restock, StockLevel), Rpc("GetStock", GetStock, StockLevel)],
        )
    ]
