"""Failures reach the consumer, in order, named, and with nothing left running."""

import asyncio
import logging
import typing

import pytest

import mediator
from mediator.exceptions import EventHandlerError, EventHandlerTimeout, EventHandlingError, MediatorError
from mediator.message_brokers.protocol import Message
from tests.mediator.fakes import Happened, Item, Log, Produce, collect, streaming


class Boom(Exception):
    pass


def emitting(*per_item: list[mediator.Event]) -> type[mediator.StreamingRequestHandler[Produce, Item]]:
    """Yields one item per list of events, emitting that list with it."""

    class Handler(mediator.StreamingRequestHandler[Produce, Item]):
        async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
            for n, events in enumerate(per_item):
                self._events = list(events)
                yield Item(n=n)

    return Handler


@pytest.mark.parametrize("delivery", ["strict", "overlapped"])
async def test_a_handler_exception_reaches_the_consumer_after_the_items_already_yielded(
    delivery: str,
) -> None:
    log = Log()
    boom = Boom("handler failed")
    before = asyncio.all_tasks()

    class Handler(mediator.StreamingRequestHandler[Produce, Item]):
        async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
            for n in range(2):
                self._events = [Happened(n=n)]
                yield Item(n=n)
            self._events = [Happened(n=2)]  # work that did happen before the failure
            raise boom

    class Recorder(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            await asyncio.sleep(0)
            log(f"event {event.n}")

    got: list[Item] = []
    with pytest.raises(Boom) as caught:
        await collect(
            streaming(Handler, {Happened: [Recorder]}, event_delivery=delivery).stream(Produce()), into=got
        )

    assert caught.value is boom
    assert got == [Item(n=0), Item(n=1)]
    assert sorted(log.entries) == ["event 0", "event 1", "event 2"]
    assert asyncio.all_tasks() == before


@pytest.mark.parametrize("delivery", ["strict", "overlapped"])
async def test_a_failing_event_handler_lets_its_siblings_finish_then_names_event_and_handler(
    delivery: str,
) -> None:
    log = Log()
    boom = Boom("event handler failed")
    event = Happened(n=0, tag="bad")
    before = asyncio.all_tasks()

    class Fails(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            if event.tag == "bad":
                log("fails")
                raise boom

    class Sibling(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            try:
                for _ in range(5):
                    await asyncio.sleep(0)  # still working when its sibling fails
                log(f"sibling {event.tag} finished")
            except asyncio.CancelledError:
                log(f"sibling {event.tag} cancelled")
                raise

    mediator_ = streaming(
        emitting([Happened(n=0, tag="ok"), event, Happened(n=0, tag="ok2")]),
        {Happened: [Sibling, Fails]},
        event_delivery=delivery,
    )
    got: list[Item] = []
    with pytest.raises(EventHandlerError) as caught:
        await collect(mediator_.stream(Produce()), into=got)

    error = caught.value
    assert isinstance(error, EventHandlingError)
    assert isinstance(error, MediatorError)
    assert error.event is event
    assert error.handler_name == Fails.__qualname__
    assert error.__cause__ is boom
    assert "Fails" in str(error)
    assert "Happened" in str(error)
    assert error.others == []
    assert sorted(log.entries) == [
        "fails",
        "sibling bad finished",
        "sibling ok finished",
        "sibling ok2 finished",
    ]
    # strict: item 0 is never delivered; overlapped: it was, and the error ends the stream after it
    assert got == ([] if delivery == "strict" else [Item(n=0)])
    assert asyncio.all_tasks() == before
    assert mediator_.event_handlers_running == 0


async def test_overlapped_delivers_no_item_once_an_event_failure_is_known() -> None:
    failed = asyncio.Event()
    produced: list[int] = []

    class Handler(mediator.StreamingRequestHandler[Produce, Item]):
        async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
            for n in range(3):
                if n == 1:
                    await failed.wait()
                produced.append(n)
                self._events = [Happened(n=n)]
                yield Item(n=n)

    class FailsOnFirst(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            if event.n == 0:
                raise Boom("first item's event failed")

    class RunsAfterIt(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            failed.set()  # one at a time: FailsOnFirst has ended when this runs

    mediator_ = streaming(
        Handler,
        {Happened: [FailsOnFirst, RunsAfterIt]},
        event_delivery="overlapped",
        concurrent_event_handle_enable=False,
    )
    got: list[Item] = []
    with pytest.raises(EventHandlerError, match="first item's event failed"):
        await collect(mediator_.stream(Produce()), into=got)

    assert got == [Item(n=0)]
    # Item 1 is never delivered. On 3.11 it is produced while the failure happens; on 3.12 the
    # event handlers ran eagerly, so the failure is known before the handler is asked for item 1.
    assert produced in ([0, 1], [0])


async def test_several_failures_raise_the_first_and_keep_the_others() -> None:
    class Fails(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            raise Boom(f"boom {event.n}")

    mediator_ = streaming(emitting([Happened(n=1), Happened(n=2), Happened(n=3)]), {Happened: [Fails]})
    with pytest.raises(EventHandlerError) as caught:
        await collect(mediator_.stream(Produce()))

    assert str(caught.value.__cause__) == "boom 1"
    assert [str(other.__cause__) for other in caught.value.others] == ["boom 2", "boom 3"]


async def test_an_event_handler_running_past_its_timeout_raises_event_handler_timeout() -> None:
    log = Log()
    event = Happened(n=0, tag="slow")
    before = asyncio.all_tasks()

    class Hangs(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            if event.tag == "slow":
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    log("hanging handler cancelled")
                    raise
            log(f"{event.tag} handled")

    mediator_ = streaming(
        emitting([Happened(n=0, tag="fast"), event]), {Happened: [Hangs]}, event_handler_timeout=0.05
    )
    with pytest.raises(EventHandlerTimeout) as caught:
        await collect(mediator_.stream(Produce()))

    assert caught.value.event is event
    assert caught.value.handler_name == Hangs.__qualname__
    assert caught.value.timeout == 0.05
    assert "timed out after 0.05 s" in str(caught.value)
    assert log.entries == ["fast handled", "hanging handler cancelled"]
    assert asyncio.all_tasks() == before


async def test_a_timeout_error_raised_by_the_handler_itself_is_not_reported_as_our_timeout() -> None:
    own = TimeoutError("the database timed out")

    class RaisesTimeout(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            raise own

    mediator_ = streaming(emitting([Happened(n=0)]), {Happened: [RaisesTimeout]}, event_handler_timeout=5)
    with pytest.raises(EventHandlerError) as caught:
        await collect(mediator_.stream(Produce()))

    assert not isinstance(caught.value, EventHandlerTimeout)
    assert caught.value.__cause__ is own


@pytest.mark.parametrize("timeout", [0, -1])
def test_a_non_positive_event_handler_timeout_is_refused(timeout: float) -> None:
    with pytest.raises(ValueError, match="event_handler_timeout"):
        streaming(emitting(), event_handler_timeout=timeout)


async def test_a_failing_broker_is_named_like_an_event_handler() -> None:
    refused = ConnectionError("broker down")

    class FailingBroker:
        async def send_message(self, message: Message) -> None:
            raise refused

        async def aclose(self) -> None:
            return None

    note = mediator.NotificationEvent[int](topic="t", payload=1)
    mediator_ = streaming(emitting([note]), message_broker=FailingBroker())
    with pytest.raises(EventHandlerError) as caught:
        await collect(mediator_.stream(Produce()))

    assert caught.value.event is note
    assert caught.value.handler_name == FailingBroker.__qualname__
    assert caught.value.__cause__ is refused


async def test_event_failures_after_a_handler_exception_are_logged_not_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Handler(mediator.StreamingRequestHandler[Produce, Item]):
        async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
            self._events = [Happened(n=7)]
            raise Boom("handler failed")
            yield Item(n=0)  # pragma: no cover - makes this an async generator

    class Fails(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            raise Boom("event failed")

    with caplog.at_level(logging.ERROR, logger="mediator"), pytest.raises(Boom, match="handler failed"):
        await collect(streaming(Handler, {Happened: [Fails]}).stream(Produce()))

    (record,) = [record for record in caplog.records if record.name == "mediator"]
    assert "Fails failed handling Happened" in record.getMessage()
    assert record.exc_info is not None
