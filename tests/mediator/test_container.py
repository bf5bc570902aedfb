"""Where handlers come from: di, dependency_injector, a custom resolver, or no container."""

import typing

import di
import pytest
from dependency_injector import containers, providers

import mediator
from mediator import bootstrap
from mediator.container import Resolver
from tests.mediator.fakes import Happened, Item, Log, Produce, collect


class Repository:
    """A dependency; every instance is numbered so tests can tell them apart."""

    made = 0

    def __init__(self) -> None:
        Repository.made += 1
        self.number = Repository.made


class NeedsRepository(mediator.StreamingRequestHandler[Produce, Item]):
    def __init__(self, repository: Repository) -> None:
        self.repository = repository

    async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
        for _ in range(request.count):
            self._events = [Happened(n=self.repository.number)]
            yield Item(n=self.repository.number)


class NoDependencies(mediator.StreamingRequestHandler[Produce, Item]):
    async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
        for n in range(request.count):
            yield Item(n=n)


def mediator_with(
    container: object,
    handler: type[mediator.StreamingRequestHandler[Produce, Item]],
    *event_handlers: type[mediator.EventHandler[Happened]],
) -> mediator.StreamingRequestMediator:
    def commands(mapper: mediator.RequestMap) -> None:
        mapper.bind(Produce, handler)

    def events(mapper: mediator.EventMap) -> None:
        for event_handler in event_handlers:
            mapper.bind(Happened, event_handler)

    return bootstrap.bootstrap_streaming(
        di_container=container, commands_mapper=commands, domain_events_mapper=events
    )


async def test_di_container_builds_a_handler_with_no_dependencies_on_the_fast_path() -> None:
    resolver = Resolver(di.Container())

    first, second = await resolver.resolve(NoDependencies), await resolver.resolve(NoDependencies)

    assert isinstance(first, NoDependencies)
    assert first is not second
    assert resolver._factories[NoDependencies] is NoDependencies  # planned once: call the class


async def test_di_container_builds_a_handler_with_a_dependency_on_the_slow_path() -> None:
    resolver = Resolver(di.Container())

    first, second = await resolver.resolve(NeedsRepository), await resolver.resolve(NeedsRepository)

    assert resolver._factories[NeedsRepository] is None  # resolved by di itself each time
    assert isinstance(first.repository, Repository)
    assert first is not second
    assert first.repository is not second.repository


async def test_di_container_serves_streams_and_event_handlers() -> None:
    log = Log()

    class Audit(mediator.EventHandler[Happened]):
        def __init__(self, repository: Repository) -> None:
            self.repository = repository

        async def handle(self, event: Happened) -> None:
            log(f"event {event.n} audited with a repository: {isinstance(self.repository, Repository)}")

    mediator_ = mediator_with(di.Container(), NeedsRepository, Audit)
    a = await collect(mediator_.stream(Produce(count=2)))
    b = await collect(mediator_.stream(Produce(count=1)))

    assert a[0].n == a[1].n  # one handler (and repository) for the whole stream
    assert b[0].n != a[0].n  # a fresh one for the next stream
    assert log.entries == [f"event {item.n} audited with a repository: True" for item in a + b]


async def test_dependency_injector_container_builds_handlers_from_its_providers() -> None:
    log = Log()

    class Audit(mediator.EventHandler[Happened]):
        def __init__(self, prefix: str) -> None:
            self.prefix = prefix

        async def handle(self, event: Happened) -> None:
            log(f"{self.prefix} {event.n}")

    class Services(containers.DeclarativeContainer):
        repository = providers.Factory(Repository)
        handler = providers.Factory(NeedsRepository, repository=repository)
        audit = providers.Factory(Audit, prefix="audited")

    mediator_ = mediator_with(Services(), NeedsRepository, Audit)
    a = await collect(mediator_.stream(Produce(count=2)))
    b = await collect(mediator_.stream(Produce(count=1)))

    assert a[0].n == a[1].n
    assert b[0].n != a[0].n
    assert log.entries == [f"audited {item.n}" for item in a + b]


async def test_dependency_injector_container_builds_handlers_it_does_not_provide_with_no_arguments() -> None:
    class Services(containers.DeclarativeContainer):
        repository = providers.Factory(Repository)

    items = await collect(mediator_with(Services(), NoDependencies).stream(Produce(count=2)))

    assert items == [Item(n=0), Item(n=1)]


async def test_any_object_with_an_async_resolve_method_is_a_container() -> None:
    asked: list[type] = []

    class Custom:
        async def resolve(self, type_: type) -> typing.Any:
            asked.append(type_)
            if type_ is NeedsRepository:
                return NeedsRepository(Repository())
            return type_()

    class Recorder(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            pass

    assert isinstance(Custom(), mediator.Container)
    mediator_ = mediator_with(Custom(), NeedsRepository, Recorder)
    await collect(mediator_.stream(Produce(count=2)))

    assert asked == [NeedsRepository, Recorder, Recorder]  # asked every time, never cached


async def test_no_container_builds_handlers_with_no_arguments() -> None:
    built: list[object] = []

    class Counting(NoDependencies):
        def __init__(self) -> None:
            built.append(self)

    mediator_ = mediator_with(None, Counting)
    await collect(mediator_.stream(Produce(count=1)))
    await collect(mediator_.stream(Produce(count=1)))

    assert len(built) == 2
    assert built[0] is not built[1]


@pytest.mark.parametrize("container", [object(), {"handlers": []}, 42])
def test_an_unsupported_container_is_a_type_error(container: object) -> None:
    with pytest.raises(TypeError, match="not a supported container"):
        mediator_with(container, NoDependencies)


async def test_dependency_injector_prefers_the_provider_of_the_exact_handler_type() -> None:
    class Base(NoDependencies):
        pass

    class Special(Base):
        pass

    class Services(containers.DeclarativeContainer):
        special = providers.Factory(Special)
        base = providers.Factory(Base)

    class Override(Base):
        pass

    class Overriding(containers.DeclarativeContainer):
        stand_in = providers.Factory(Override)  # not `override`: that is a DeclarativeContainer method

    for _ in range(20):  # traverse() walks a set: try many orders
        assert type(await Resolver(Services()).resolve(Base)) is Base
        assert type(await Resolver(Services()).resolve(Special)) is Special
    assert type(await Resolver(Overriding()).resolve(Base)) is Override  # a subclass may stand in
