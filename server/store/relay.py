"""The outbox relay: publishes the notifications units of work committed to the outbox table.

A notification is written to ``outbox`` in the same transaction as the state changes of its item
(:mod:`server.store`); the relay sends each row to the broker and marks it ``published``::

    async with OutboxRelay(engine, broker, settings.outbox, metrics=RelayMetrics(registry)) as relay:
        ...                 # the store calls relay.notify() after each commit

Rounds
    A round claims up to ``batch_size`` pending rows that are due, oldest first, publishes them one
    after the other (so one relay publishes in commit order), and records the outcome. A commit
    wakes the relay at once (:meth:`OutboxRelay.notify`); rows written by another process are found
    within ``poll_interval``, and this relay's retries when they come due. Given the store's
    ``committer``, the relay records its outcomes through it (SQLite), in the next group of units
    the streams commit (within ``RECORD_WAIT`` seconds, else alone): one transaction and one fsync
    per group rather than two, and no second writer in the process, whose transactions would wait
    on the committer's for the file's write lock (in SQLite's busy handler, which sleeps) and make
    it wait.
    The gauges are refreshed when a round found nothing to do, and at most every ``STATS_EVERY``
    seconds while the relay is busy (one query fewer per round, when every commit wakes it).

Several relays
    On PostgreSQL every relay (each worker, each replica) claims its rows with ``SELECT ... FOR
    UPDATE SKIP LOCKED`` and holds them until its round commits: relays share the work and never
    publish a row another one holds. On SQLite one relay per database file publishes: the holder of
    a file lock beside the database (:mod:`server.store.relay_lock`); the others wait and take over
    within ``poll_interval`` when it stops or dies.

Failures
    A row the broker did not take is retried with exponential backoff (``backoff`` doubling up to
    ``max_backoff``, jittered), its attempts and last error recorded; after ``max_attempts`` failed
    attempts it is ``dead``: logged (one line per message), counted, kept until ``python -m server
    outbox replay``. When the broker is unreachable (``BrokerUnavailable``, or a publish past
    ``publish_timeout``) the round stops at that row and the relay pauses for the row's backoff, so
    the oldest row goes first again once the broker is back and a broker outage costs one attempt
    per pause, not one per row. A row the broker refused (any other error) is passed over: it cannot
    hold up the ones behind it.

Guarantees
    At least once: a relay that dies between the broker's confirmation and its commit (through the
    committer: up to ``RECORD_WAIT`` seconds later) publishes the row again later (on PostgreSQL its
    claim is rolled back; on SQLite its outcome was not written). The envelope's ``message_id`` (the
    AMQP ``message_id``) is the row's key, so consumers recognise duplicates. Order is the commit
    order per relay, except around a retried row (the rows passed over while it backs off go first)
    and between several relays.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import pathlib
import random
import time
import typing
import uuid

import pydantic
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mediator.exceptions import BrokerUnavailable, MediatorClosed
from mediator.message_brokers.protocol import MessageBroker, broker_name
from server.brokers import StartableBroker
from server.store import outbox_rows
from server.store.engine import reader
from server.store.outbox_rows import OutboxRow
from server.store.outbox_settings import OutboxSettings
from server.store.relay_lock import RelayLock
from server.store.relay_metrics import RelayMetrics
from server.store.units import StoreUnit

if typing.TYPE_CHECKING:
    from server.store.committer import GroupCommitter

__all__ = ["OutboxRelay", "RelayClosed"]

logger = logging.getLogger("server.outbox")

PRUNE_EVERY = 60.0
"""Seconds between deletions of rows published more than ``keep_published`` ago."""
PRUNE_BATCH = 1000
STATS_EVERY = 1.0
"""Seconds between gauge refreshes while the relay is busy (after every idle round otherwise)."""
MAX_ERROR_TEXT = 2000
RECORD_WAIT = 0.1
"""Seconds a round's outcome waits to ride in a group of the streams' units (given the committer)."""


class RelayClosed(RuntimeError):
    """A relay was started after :meth:`OutboxRelay.aclose` (a relay is not reusable)."""


@dataclasses.dataclass
class _Failure:
    row: OutboxRow
    error: str
    give_up: bool = False  # retrying cannot help (the row holds no valid envelope)


@dataclasses.dataclass
class _Outcome:
    """What one round did with the rows it claimed (rows after a stop are left untouched)."""

    claimed: int = 0
    published: list[uuid.UUID] = dataclasses.field(default_factory=list)
    failures: list[_Failure] = dataclasses.field(default_factory=list)
    unavailable: bool = False  # the broker could not be reached: pause before the next round
    recorded: list[tuple[_Failure, int, datetime.datetime | None]] = dataclasses.field(default_factory=list)
    """Each failure as written: its attempts, and when it is retried (None: dead)."""
    at: datetime.datetime = dataclasses.field(default_factory=outbox_rows.now)
    """When the outcome is recorded (``published_at``, the backoff's start)."""


def _describe(error: BaseException) -> str:
    text = str(error)
    described = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return described[:MAX_ERROR_TEXT]


class OutboxRelay:
    """Publishes the outbox rows of ``engine``'s database to ``broker`` (module docs).

    :param engine: the store's engine (PostgreSQL or SQLite).
    :param broker: where rows go; started and closed by its owner (the relay, with ``own_broker``).
        Give it the plain broker: retrying is the relay's job (a ``RetryingMessageBroker`` would keep
        a second, in-memory backlog).
    :param settings: pace, batch size, retries (``Settings.outbox``).
    :param metrics: the series to update, if any.
    :param lock_path: SQLite only: the lock file (default: ``<database file>.relay.lock``).
    :param own_broker: the relay starts ``broker`` (if it has ``start()``) with itself and closes it
        once stopped (the server's relay does: nothing else publishes to that broker).
    :param committer: the store's group committer (the store of ``engine``): on SQLite the relay
        records what it published as a unit through it (module docs). Without it, in a transaction
        of its own.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        broker: MessageBroker,
        settings: OutboxSettings,
        *,
        metrics: RelayMetrics | None = None,
        lock_path: pathlib.Path | None = None,
        own_broker: bool = False,
        committer: GroupCommitter | None = None,
    ) -> None:
        if committer is not None and committer.engine is not engine:
            raise ValueError("the committer must be the store's of the relay's engine")
        self.engine = engine
        self.committer = committer
        self.broker = broker
        self.own_broker = own_broker
        self.settings = settings
        self.metrics = metrics
        self.skip_locked = engine.dialect.name == "postgresql"
        # Reads that must not take SQLite's write lock (the store's engine begins BEGIN IMMEDIATE).
        self._reader = reader(engine)
        self._lock: RelayLock | None = None
        if not self.skip_locked:
            database = engine.url.database
            if lock_path is None and database and database != ":memory:":
                lock_path = pathlib.Path(database + ".relay.lock")
            # An in-memory database belongs to one process: nobody else could relay it.
            self._lock = RelayLock(lock_path) if lock_path is not None else None
        self.published = 0
        """Rows this relay published."""
        self.failures = 0
        """Failed publish attempts."""
        self.dead_lettered = 0
        """Rows this relay gave up (dead)."""
        self.records = 0
        """Outcomes of rounds this relay wrote (each a transaction, or a unit through the committer)."""
        self.looks = 0
        """Rounds, and idle tries to take the SQLite lock, so far."""
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._active = asyncio.Event()
        self._progress = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._stats_at = -STATS_EVERY
        self._pruned_at = -PRUNE_EVERY  # the first quiet round prunes
        self._failing_since: float | None = None
        self._next_retry: datetime.datetime | None = None
        """The earliest retry this relay scheduled since the gauges were last refreshed."""

    def __repr__(self) -> str:
        return (
            f"<{type(self).__qualname__} {self.engine.url.render_as_string()} -> {broker_name(self.broker)}>"
        )

    @property
    def active(self) -> bool:
        """This relay publishes: it holds the SQLite lock (on PostgreSQL: always, once started)."""
        return self._active.is_set()

    async def wait_active(self) -> None:
        """Return once this relay publishes (for tests and start-up checks)."""
        await self._active.wait()

    async def wait_for(self, predicate: typing.Callable[[OutboxRelay], bool]) -> None:
        """Return once ``predicate(relay)`` holds, checked after every round and every idle look
        (for tests and tools: ``await relay.wait_for(lambda r: r.published >= 10)``)."""
        async with self._progress:
            await self._progress.wait_for(lambda: predicate(self))

    def notify(self) -> None:
        """Look for due rows now (the store calls it after each commit that wrote outbox rows)."""
        self._wake.set()

    async def start(self) -> None:
        """Start the broker if the relay owns it (an unreachable one fails here), then the relay's
        task. Idempotent."""
        if self._closed:
            raise RelayClosed(f"{self!r} was closed; create a new relay")
        if self._task is not None:
            return
        if self.own_broker and isinstance(self.broker, StartableBroker):
            await self.broker.start()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="outbox-relay")

    def register_metrics(self, registry: CollectorRegistry) -> None:
        """Report on ``registry`` (the server's): called by the server before it starts."""
        if self.metrics is None:
            self.metrics = RelayMetrics(registry)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        """Ask the relay to stop once the publish in flight is recorded (:meth:`aclose` waits for it)."""
        self._closed = True
        self._stop.set()
        self._wake.set()

    async def aclose(self) -> None:
        """Stop: the publish in flight finishes and its outcome is recorded; the rest of its round is
        left for later. Idempotent. Cancelled (``asyncio.timeout`` around it), it cancels the round:
        what that round published is published again later (at least once)."""
        self.stop()
        task, self._task = self._task, None
        try:
            if task is not None:
                await self._stopped(task)
        finally:
            if self.own_broker:
                await self.broker.aclose()

    @staticmethod
    async def _stopped(task: asyncio.Task[None]) -> None:
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task  # its lock released, its transaction rolled back
            raise

    async def __aenter__(self) -> OutboxRelay:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- the task -----------------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    await self._step()
                except Exception as error:  # the database is away: keep trying, say so once
                    if self._failing_since is None:
                        self._failing_since = time.monotonic()
                        logger.error(
                            "outbox relay: %s; retrying every %g s",
                            _describe(error),
                            self.settings.poll_interval,
                        )
                    await self._sleep(self.settings.poll_interval, self._stop)
                else:
                    if self._failing_since is not None:
                        logger.info(
                            "outbox relay: working again after %.1f s", time.monotonic() - self._failing_since
                        )
                        self._failing_since = None
        finally:
            self._set_active(False)
            if self._lock is not None:
                self._lock.release()
            logger.info(
                "outbox relay stopped: %d published, %d failed attempts, %d dead",
                self.published,
                self.failures,
                self.dead_lettered,
            )

    async def _step(self) -> None:
        """One round if this relay may publish, then the wait until the next one."""
        if not self._may_publish():
            await self._refresh_stats()  # the gauges stay current in every process
            await self._progressed()
            await self._sleep(self.settings.poll_interval, self._stop)
            return
        outcome = await self._round()
        if outcome.unavailable:
            pause = self._pause_after(outcome)
            await self._refresh_stats(throttled=True)
            await self._progressed()
            await self._sleep(pause, self._stop)  # not woken by commits: the broker is away
            return
        if outcome.claimed >= self.settings.batch_size and not self._stop.is_set():
            await self._refresh_stats(throttled=True)
            await self._progressed()
            return  # a full batch: more are probably due
        # Busy (this round published): throttled; idle: the gauges settle on what the table holds.
        stats = await self._refresh_stats(throttled=outcome.claimed > 0)
        await self._prune()
        await self._progressed()
        await self._sleep(self._idle_delay(stats), self._wake)

    async def _progressed(self) -> None:
        self.looks += 1
        async with self._progress:
            self._progress.notify_all()

    def _may_publish(self) -> bool:
        if self._lock is not None and not self._lock.try_acquire():
            return False
        self._set_active(True)
        return True

    def _set_active(self, active: bool) -> None:
        if active == self._active.is_set():
            return
        if active:
            self._active.set()
            logger.info("outbox relay publishing to %s", broker_name(self.broker))
        else:
            self._active.clear()
        if self.metrics is not None:
            self.metrics.publishing.inc(1 if active else -1)

    def _idle_delay(self, stats: outbox_rows.OutboxStats) -> float:
        delay = self.settings.poll_interval
        at = outbox_rows.now()
        for due in (stats.next_due, self._next_retry):
            if due is not None:
                until_due = (due - at).total_seconds()
                # A row due already was claimed by another relay (PostgreSQL) or committed since this
                # round's claim (its commit woke the relay): no reason to wake before the poll.
                if until_due > 0:
                    delay = min(delay, until_due)
        if self._next_retry is not None and self._next_retry <= at:
            self._next_retry = None  # due now: the next round claims it
        return delay

    @staticmethod
    async def _sleep(seconds: float, event: asyncio.Event) -> None:
        """Sleep ``seconds`` or until ``event`` is set, whichever comes first."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await event.wait()

    # -- a round ------------------------------------------------------------------------------
    async def _round(self) -> _Outcome:
        self._wake.clear()  # a commit from now on wakes the next round
        batch = self.settings.batch_size
        if self.skip_locked:
            # The claim's row locks are held while publishing: other relays skip these rows.
            async with self.engine.connect() as connection, connection.begin():
                rows = await outbox_rows.due_rows(connection, outbox_rows.now(), batch, skip_locked=True)
                outcome = await self._publish(rows)
                self._plan(outcome)
                await self._record(connection, outcome)
            self._count(outcome)
            return outcome
        # SQLite: this relay is the only one (the lock), so the claim needs no lock; no transaction
        # is held while publishing, which would stall the store's commits.
        async with self._reader.connect() as connection:
            rows = await outbox_rows.due_rows(connection, outbox_rows.now(), batch, skip_locked=False)
        outcome = await self._publish(rows)
        if outcome.published or outcome.failures:
            self._plan(outcome)
            if self.committer is not None:
                unit = StoreUnit(self.committer)
                unit.stage(lambda connection: self._record(connection, outcome))
                await unit.commit(wait_for_group=min(RECORD_WAIT, self.settings.poll_interval))
            else:
                async with self.engine.begin() as connection:
                    await self._record(connection, outcome)
            self._count(outcome)
        return outcome

    async def _publish(self, rows: list[OutboxRow]) -> _Outcome:
        outcome = _Outcome(claimed=len(rows))
        for row in rows:
            if self._stop.is_set():
                break  # stopping: the publish in flight finished, the rest waits for the next relay
            try:
                message = outbox_rows.message_of(row)
            except pydantic.ValidationError as error:
                outcome.failures.append(
                    _Failure(row, f"not a valid envelope: {_describe(error)}", give_up=True)
                )
                continue
            try:
                async with asyncio.timeout(self.settings.publish_timeout):
                    await self.broker.send_message(message)
            except MediatorClosed:
                break  # the broker was closed under the relay (shutdown): no attempt is counted
            except (BrokerUnavailable, TimeoutError) as error:
                if isinstance(error, TimeoutError) and not str(error):
                    error = TimeoutError(f"no confirmation within {self.settings.publish_timeout:g} s")
                outcome.failures.append(_Failure(row, _describe(error)))
                outcome.unavailable = True
                break
            except Exception as error:  # refused: this row only
                outcome.failures.append(_Failure(row, _describe(error)))
            else:
                outcome.published.append(row.message_id)
        return outcome

    def _plan(self, outcome: _Outcome) -> None:
        """Decide each failure's attempts and retry time (jittered: once, whatever writes it)."""
        outcome.at = outbox_rows.now()
        for failure in outcome.failures:
            attempts = failure.row.attempts + 1
            give_up = failure.give_up or attempts >= self.settings.max_attempts
            retry_at = None if give_up else outcome.at + datetime.timedelta(seconds=self._backoff(attempts))
            outcome.recorded.append((failure, attempts, retry_at))

    async def _record(self, connection: AsyncConnection, outcome: _Outcome) -> None:
        """Write ``outcome`` as :meth:`_plan` decided it (the caller commits it, then calls
        :meth:`_count`). Only the database: through the committer it may run twice (its docs)."""
        await outbox_rows.mark_published(connection, outcome.published, outcome.at)
        for failure, attempts, retry_at in outcome.recorded:
            await outbox_rows.mark_failed(
                connection, failure.row.message_id, attempts=attempts, error=failure.error, retry_at=retry_at
            )

    def _count(self, outcome: _Outcome) -> None:
        """Count and log ``outcome`` once it is committed."""
        self.records += 1
        self.published += len(outcome.published)
        self.failures += len(outcome.recorded)
        if self.metrics is not None:
            self.metrics.published.inc(len(outcome.published))
            self.metrics.failures.inc(len(outcome.recorded))
        for failure, attempts, retry_at in outcome.recorded:
            row = failure.row
            if retry_at is not None and (self._next_retry is None or retry_at < self._next_retry):
                self._next_retry = retry_at
            if retry_at is None:
                self.dead_lettered += 1
                if self.metrics is not None:
                    self.metrics.dead_lettered.inc()
                logger.error(
                    "outbox message %s %s is dead after %d attempt%s: %s",
                    row.message_id,
                    row.message_name,
                    attempts,
                    "" if attempts == 1 else "s",
                    failure.error,
                    extra={
                        "message_id": str(row.message_id),
                        "message_name": row.message_name,
                        "attempts": attempts,
                    },
                )
            else:
                logger.warning(
                    "publishing outbox message %s %s failed (attempt %d of %d): %s; next attempt in %.1f s",
                    row.message_id,
                    row.message_name,
                    attempts,
                    self.settings.max_attempts,
                    failure.error,
                    (retry_at - outbox_rows.now()).total_seconds(),
                )

    def _backoff(self, attempts: int) -> float:
        """Seconds before the attempt after the ``attempts``-th failed one: doubling, capped, jittered."""
        settings = self.settings
        exponent = min(attempts - 1, 60)  # 2**60 s is far past any max_backoff
        return min(settings.max_backoff, settings.backoff * 2.0**exponent) * random.uniform(0.5, 1.0)

    def _pause_after(self, outcome: _Outcome) -> float:
        """How long the relay waits after the broker was unreachable: the failed row's own backoff,
        so that it is due again when the relay looks next."""
        failed = outcome.failures[-1]
        attempts = failed.row.attempts + 1
        if attempts >= self.settings.max_attempts:
            return self.settings.backoff  # it is dead: the next row may try soon
        return min(self.settings.max_backoff, self.settings.backoff * 2.0 ** min(attempts - 1, 60))

    # -- upkeep -------------------------------------------------------------------------------
    async def _refresh_stats(self, *, throttled: bool = False) -> outbox_rows.OutboxStats:
        clock = time.monotonic()
        if throttled and clock - self._stats_at < STATS_EVERY:
            return outbox_rows.OutboxStats()
        self._stats_at = clock
        async with self._reader.connect() as connection:
            stats = await outbox_rows.stats(connection)
        if self.metrics is not None:
            self.metrics.pending.set(stats.pending)
            self.metrics.dead.set(stats.dead)
            oldest = stats.oldest_pending
            age = max(0.0, (outbox_rows.now() - oldest).total_seconds()) if oldest is not None else 0.0
            self.metrics.oldest_pending_seconds.set(age)
        return stats

    async def _prune(self) -> None:
        clock = time.monotonic()
        if clock - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = clock
        before = outbox_rows.now() - datetime.timedelta(seconds=self.settings.keep_published)
        async with self.engine.begin() as connection:
            deleted = await outbox_rows.delete_published(connection, before, PRUNE_BATCH)
        if deleted:
            logger.info("outbox: deleted %d rows published before %s", deleted, before.isoformat())
