"""The demo's read models in the store: processed orders (what ``GetOrder`` reads) and files.

Recording stages an upsert in the item's unit of work (:meth:`Store.write`): the row is committed
with the item's outbox row, or not at all, and in ``strict`` delivery before the client gets the
item, so a ``GetOrder`` on any connection, worker or replica finds every order it was told about.
"""

from __future__ import annotations

import datetime

import sqlalchemy as sa

from server.exceptions import NotFound
from server.services.files import FileProcessedEvent
from server.services.orders import OrderView
from server.store.schema import files, orders
from server.store.store import Store
from server.store.units import upsert

__all__ = ["StoredFileLedger", "StoredOrderBook"]

_COLUMNS = [
    orders.c.order_id,
    orders.c.customer_id,
    orders.c.total_amount,
    orders.c.status,
    orders.c.processed_at,
]


class StoredOrderBook:
    """Processed orders in the ``orders`` table (:class:`server.services.orders.OrderRecords`)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def save(self, order: OrderView) -> None:
        await self.store.write(upsert(orders, order.model_dump()))

    async def load(self, order_id: str) -> OrderView:
        async with self.store.reader.connect() as connection:
            row = (
                await connection.execute(sa.select(*_COLUMNS).where(orders.c.order_id == order_id))
            ).first()
        if row is None:
            raise NotFound(f"order {order_id!r} is not known")
        return OrderView.model_validate(row._asdict())

    async def count(self) -> int:
        """Orders recorded (committed)."""
        async with self.store.reader.connect() as connection:
            return int(
                (await connection.execute(sa.select(sa.func.count()).select_from(orders))).scalar_one()
            )


class StoredFileLedger:
    """The last result of every file id processed, in the ``files`` table
    (:class:`server.services.files.FileRecords`)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def save(self, event: FileProcessedEvent) -> None:
        row = {
            "file_id": event.file_id,
            "status": event.status,
            "size_bytes": event.size_bytes,
            "sha256": event.sha256,
            "processed_at": datetime.datetime.now(datetime.UTC),
        }
        await self.store.write(upsert(files, row))

    async def load(self, file_id: str) -> dict[str, object] | None:
        """The row recorded for ``file_id``, or None."""
        async with self.store.reader.connect() as connection:
            row = (await connection.execute(sa.select(files).where(files.c.file_id == file_id))).first()
        return None if row is None else row._asdict()
