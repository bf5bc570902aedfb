"""Explicit container adapters: chosen by ``isinstance`` or given, dishka among them, and your own."""

from __future__ import annotations

import typing

import dishka
import pytest

import mediator
from mediator import bootstrap
from mediator.container import (
    ContainerAdapter,
    DependencyInjectorAdapter,
    DiAdapter,
    DishkaAdapter,
    NoContainer,
    ResolvingAdapter,
    adapter_for,
)
from tests.mediator.fakes import Item, Produce, collect


class Greeting:
    def __init__(self) -> None:
        self.text = "hello"


class Greeter(mediator.StreamingRequestHandler[Produce, Item]):
    def __init__(self, greeting: Greeting) -> None:
        self._events: list[mediator.Event] = []
        self.greeting = greeting

    async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
        for n in range(request.count):
            yield Item(n=n, tag=self.greeting.text)


def commands(mapper: mediator.RequestMap) -> None:
    mapper.bind(Produce, Greeter)


def test_each_supported_container_gets_its_own_adapter_by_isinstance() -> None:
    import di
    from dependency_injector import containers

    class Resolves:
        async def resolve(self, type_: type[typing.Any]) -> typing.Any:
            return type_()

    class Empty(containers.DeclarativeContainer):
        pass

    assert isinstance(adapter_for(None), NoContainer)
    assert isinstance(adapter_for(di.Container()), DiAdapter)
    assert isinstance(adapter_for(Empty()), DependencyInjectorAdapter)
    assert isinstance(adapter_for(dishka.make_async_container(dishka.Provider())), DishkaAdapter)
    assert isinstance(adapter_for(Resolves()), ResolvingAdapter)
    own = NoContainer()
    assert adapter_for(own) is own


def test_an_unsupported_container_is_refused_saying_what_is_accepted() -> None:
    with pytest.raises(TypeError, match=r"dict is not a supported container.*ContainerAdapter"):
        adapter_for({})


async def test_a_dishka_container_builds_the_handlers() -> None:
    provider = dishka.Provider(scope=dishka.Scope.APP)
    provider.provide(Greeting)
    provider.provide(Greeter, cache=False)  # a fresh handler for every stream
    container = dishka.make_async_container(provider)
    try:
        streaming = bootstrap.bootstrap_streaming(di_container=container, commands_mapper=commands)
        assert [item.tag for item in await collect(streaming.stream(Produce(count=2)))] == ["hello"] * 2
        first, second = await container.get(Greeter), await container.get(Greeter)
        assert first is not second
    finally:
        await container.close()


async def test_an_adapter_of_your_own_is_used_as_given() -> None:
    built: list[type] = []

    class Manual(ContainerAdapter):
        async def resolve(self, type_: type[typing.Any]) -> typing.Any:
            built.append(type_)
            return Greeter(Greeting())

    streaming = bootstrap.bootstrap_streaming(di_container=Manual(), commands_mapper=commands)
    assert len(await collect(streaming.stream(Produce(count=1)))) == 1
    assert built == [Greeter]
