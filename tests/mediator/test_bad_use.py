"""Bad use gets a clear, specific error."""

import typing

import pydantic
import pytest

import mediator
from mediator.exceptions import HandlerAlreadyBound, HandlerNotFound, MediatorError
from tests.mediator.fakes import Happened, Item, Produce, collect


class Unmapped(mediator.Request):
    pass


class Ask(mediator.Request):
    pass


class Answer(mediator.Response):
    value: int


class Streams(mediator.StreamingRequestHandler[Produce, Item]):
    async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
        yield Item(n=0)


class Answers(mediator.RequestHandler[Ask, Answer]):
    async def handle(self, request: Ask) -> Answer:
        return Answer(value=42)


def both_kinds() -> mediator.RequestMap:
    request_map = mediator.RequestMap()
    request_map.bind(Produce, Streams)
    request_map.bind(Ask, Answers)
    return request_map


async def test_an_unmapped_request_raises_handler_not_found() -> None:
    streaming = mediator.StreamingRequestMediator(both_kinds())
    regular = mediator.RequestMediator(both_kinds())

    with pytest.raises(HandlerNotFound, match="Unmapped") as streamed:
        await collect(streaming.stream(Unmapped()))
    with pytest.raises(HandlerNotFound, match="Unmapped") as sent:
        await regular.send(Unmapped())

    for caught in (streamed, sent):
        assert caught.value.request_type is Unmapped
        assert isinstance(caught.value, MediatorError)
        assert isinstance(caught.value, LookupError)


# The handlers of the tests below are wrong on purpose: hence their type: ignore.
def test_a_streaming_handler_whose_handle_is_a_coroutine_is_refused_when_bound() -> None:
    class Returns(mediator.StreamingRequestHandler[Produce, Item]):
        async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:  # type: ignore[override]
            return Item(n=0)  # type: ignore[return-value]

    with pytest.raises(TypeError, match=r"Returns\.handle must be an async generator function"):
        mediator.RequestMap().bind(Produce, Returns)


def test_a_streaming_handler_whose_handle_is_a_plain_function_is_refused_when_bound() -> None:
    class Plain(mediator.StreamingRequestHandler[Produce, Item]):
        def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
            return Streams().handle(request)

    with pytest.raises(TypeError, match="async generator"):
        mediator.RequestMap().bind(Produce, Plain)


def test_a_regular_handler_whose_handle_is_an_async_generator_is_refused_when_bound() -> None:
    class Yields(mediator.RequestHandler[Ask, Answer]):
        async def handle(self, request: Ask) -> typing.AsyncIterator[Answer]:  # type: ignore[override]
            yield Answer(value=1)

    with pytest.raises(TypeError, match="coroutine function"):
        mediator.RequestMap().bind(Ask, Yields)


def test_an_event_handler_whose_handle_is_not_a_coroutine_is_refused_when_bound() -> None:
    class Yields(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> typing.AsyncIterator[None]:  # type: ignore[override]
            yield None

    with pytest.raises(TypeError, match="coroutine function"):
        mediator.EventMap().bind(Happened, Yields)


def test_a_handler_that_does_not_implement_handle_is_refused() -> None:
    class Abstract(mediator.StreamingRequestHandler[Produce, Item]):
        pass

    with pytest.raises(TypeError, match="does not implement handle"):
        mediator.RequestMap().bind(Produce, Abstract)


@pytest.mark.parametrize(
    ("request_type", "handler_type"),
    [(Produce, object), (Produce, Happened), (dict, Streams), (Happened, Streams)],
)
def test_binding_something_that_is_not_a_request_or_a_handler_is_refused(
    request_type: typing.Any, handler_type: typing.Any
) -> None:
    with pytest.raises(TypeError):
        mediator.RequestMap().bind(request_type, handler_type)


@pytest.mark.parametrize(("event_type", "handler_type"), [(Produce, Streams), (Happened, Streams)])
def test_binding_something_that_is_not_an_event_or_an_event_handler_is_refused(
    event_type: typing.Any, handler_type: typing.Any
) -> None:
    with pytest.raises(TypeError):
        mediator.EventMap().bind(event_type, handler_type)


async def test_a_regular_handler_sent_to_the_streaming_mediator_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"RequestMediator\.send"):
        await collect(mediator.StreamingRequestMediator(both_kinds()).stream(Ask()))


async def test_a_streaming_handler_sent_to_the_request_mediator_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"StreamingRequestMediator\.stream"):
        await mediator.RequestMediator(both_kinds()).send(Produce())


async def test_a_pydantic_validation_error_passes_through_unchanged() -> None:
    raised: list[pydantic.ValidationError] = []

    class Invalid(mediator.StreamingRequestHandler[Produce, Item]):
        async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
            yield Item(n=0)
            try:
                Item.model_validate({"n": "not a number"})
            except pydantic.ValidationError as error:
                raised.append(error)
                raise

    class InvalidAnswer(mediator.RequestHandler[Ask, Answer]):
        async def handle(self, request: Ask) -> Answer:
            try:
                return Answer.model_validate({})
            except pydantic.ValidationError as error:
                raised.append(error)
                raise

    request_map = mediator.RequestMap()
    request_map.bind(Produce, Invalid)
    request_map.bind(Ask, InvalidAnswer)

    items: list[Item] = []
    with pytest.raises(pydantic.ValidationError) as streamed:
        await collect(mediator.StreamingRequestMediator(request_map).stream(Produce()), into=items)
    with pytest.raises(pydantic.ValidationError) as sent:
        await mediator.RequestMediator(request_map).send(Ask())

    assert items == [Item(n=0)]
    assert [streamed.value, sent.value] == raised
    assert streamed.value is raised[0]
    assert sent.value is raised[1]


def test_binding_a_second_handler_to_a_request_type_raises_handler_already_bound() -> None:
    class AlsoStreams(mediator.StreamingRequestHandler[Produce, Item]):
        async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
            yield Item(n=1)

    request_map = mediator.RequestMap()
    request_map.bind(Produce, Streams)
    request_map.bind(Produce, Streams)  # the same binding again is harmless

    with pytest.raises(HandlerAlreadyBound, match="already bound to Streams") as caught:
        request_map.bind(Produce, AlsoStreams)

    assert caught.value.request_type is Produce
    assert isinstance(caught.value, MediatorError)
    assert request_map.get(Produce) is Streams
