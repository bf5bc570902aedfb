"""Where handlers come from: the DI container port and one explicit adapter per supported container.

The mediator asks for a fresh handler for every request and every event it handles, through a
:class:`ContainerAdapter`. ``di_container=`` takes an adapter, or a container it recognises by
``isinstance`` (nothing is imported to tell):

==============================================  ==============================================
given                                           adapter
==============================================  ==============================================
``None``                                        :class:`NoContainer`: ``handler_type()``
a ``di.Container`` (the spec's)                 :class:`DiAdapter`
a ``dependency_injector`` container             :class:`DependencyInjectorAdapter`
a ``dishka.AsyncContainer``                     :class:`DishkaAdapter`
any object with ``async def resolve(type_)``    :class:`ResolvingAdapter`
a :class:`ContainerAdapter`                     itself: write your own for another container
==============================================  ==============================================

An adapter may offer a ``plain_factory(type_)``: a callable that returns a ready instance without
awaiting, worked out once per handler type; the mediator then builds handlers without a coroutine.
``di`` handlers with no dependencies are built by calling their class, exactly what ``di`` would do,
without entering a scope per event. Short of that, a ``direct_factory(type_)`` returns the instance
or, when the container has to await something first, an awaitable of it (a ``dependency_injector``
provider is that: it switches to returning awaitables once a dependency is asynchronous); the
mediator awaits only what is not an instance, and saves the adapter's ``resolve`` coroutine otherwise.
"""

from __future__ import annotations

import inspect
import sys
import typing

__all__ = [
    "Container",
    "ContainerAdapter",
    "DependencyInjectorAdapter",
    "DiAdapter",
    "DishkaAdapter",
    "NoContainer",
    "ResolvingAdapter",
    "Resolver",
    "adapter_for",
]

T = typing.TypeVar("T")

Factory: typing.TypeAlias = typing.Callable[[], typing.Any]
DirectFactory: typing.TypeAlias = typing.Callable[[], "T | typing.Awaitable[T]"]


@typing.runtime_checkable
class Container(typing.Protocol):
    """The DI port: build an instance of ``type_``."""

    async def resolve(self, type_: type[T]) -> T: ...


class ContainerAdapter:
    """Builds handlers from one kind of container. Subclass it for a container rill does not know."""

    async def resolve(self, type_: type[T]) -> T:
        """A fresh instance of ``type_``."""
        raise NotImplementedError

    def plain_factory(self, type_: type[T]) -> typing.Callable[[], T] | None:
        """A callable returning a ready instance of ``type_`` (nothing to await), or None when only
        :meth:`resolve` can build it. Asked once per handler type."""
        return None

    def direct_factory(self, type_: type[T]) -> DirectFactory[T] | None:
        """A callable returning an instance of ``type_`` or an awaitable of one, doing what
        :meth:`resolve` does without its coroutine; None when only :meth:`resolve` can build it.
        Asked once per handler type, when :meth:`plain_factory` has none."""
        return None


class NoContainer(ContainerAdapter):
    """No container: handlers are built with no arguments."""

    async def resolve(self, type_: type[T]) -> T:
        return type_()

    def plain_factory(self, type_: type[T]) -> typing.Callable[[], T] | None:
        return type_


class ResolvingAdapter(ContainerAdapter):
    """Any object with ``async def resolve(type_)`` (the :class:`Container` protocol)."""

    def __init__(self, container: Container) -> None:
        self.container = container

    async def resolve(self, type_: type[T]) -> T:
        return await self.container.resolve(type_)


class DiAdapter(ContainerAdapter):
    """A ``di.Container``: each handler solved once, executed in a fresh ``request`` scope."""

    def __init__(self, container: typing.Any) -> None:
        self.container = container
        self._solved: dict[type, typing.Any] = {}

    def _solve(self, type_: type) -> typing.Any:
        from di.dependent import Dependent

        solved = self._solved.get(type_)
        if solved is None:
            solved = self.container.solve(Dependent(type_, scope="request"), scopes=["request"])
            self._solved[type_] = solved
        return solved

    def plain_factory(self, type_: type[T]) -> typing.Callable[[], T] | None:
        dag = self._solve(type_).dag
        if len(dag) == 1:
            (only,) = dag
            call = only.call
            if isinstance(call, type) and not dag[only]:
                return typing.cast(typing.Callable[[], T], call)
        return None

    async def resolve(self, type_: type[T]) -> T:
        from di.executors import AsyncExecutor

        solved = self._solve(type_)
        async with self.container.enter_scope("request") as state:
            return typing.cast(T, await solved.execute_async(executor=AsyncExecutor(), state=state))


class DependencyInjectorAdapter(ContainerAdapter):
    """A ``dependency_injector`` container: the provider whose class is the handler type builds it
    (one of a subclass stands in for it); a type no provider makes is built with no arguments."""

    def __init__(self, container: typing.Any) -> None:
        self.container = container
        self._providers: dict[type, Factory] = {}

    def _provider(self, type_: type) -> Factory:
        found = self._providers.get(type_)
        if found is not None:
            return found
        # traverse() walks a set, so "the first match" alone would vary from run to run.
        stand_in: Factory | None = None
        for provider in self.container.traverse():
            provided = getattr(provider, "cls", None) or getattr(provider, "provides", None)
            if provided is type_:
                stand_in = typing.cast(Factory, provider)
                break
            if stand_in is None and isinstance(provided, type) and issubclass(provided, type_):
                stand_in = typing.cast(Factory, provider)
        found = self._providers[type_] = stand_in if stand_in is not None else type_
        return found

    async def resolve(self, type_: type[T]) -> T:
        instance = self._provider(type_)()
        if inspect.isawaitable(instance):  # a provider with an async dependency returns an awaitable
            instance = await instance
        return typing.cast(T, instance)

    def direct_factory(self, type_: type[T]) -> DirectFactory[T] | None:
        # The provider itself: an instance, or an awaitable once it is in async mode.
        return typing.cast("DirectFactory[T]", self._provider(type_))


class DishkaAdapter(ContainerAdapter):
    """A ``dishka.AsyncContainer``: ``await container.get(type_)``. Provide handlers uncached
    (``provide(Handler, scope=..., cache=False)``) so that each request and event gets a fresh one."""

    def __init__(self, container: typing.Any) -> None:
        self.container = container

    async def resolve(self, type_: type[T]) -> T:
        return typing.cast(T, await self.container.get(type_))


def _loaded_class(module: str, name: str) -> type | None:
    # A container of a package that was never imported cannot be an instance of its class: nothing
    # needs importing to tell.
    loaded = sys.modules.get(module)
    found = getattr(loaded, name, None) if loaded is not None else None
    return found if isinstance(found, type) else None


def adapter_for(container: object | None) -> ContainerAdapter:
    """The adapter for ``container`` (see the module docs), recognised by ``isinstance``."""
    if container is None:
        return NoContainer()
    if isinstance(container, ContainerAdapter):
        return container
    known: tuple[tuple[str, str, typing.Callable[[typing.Any], ContainerAdapter]], ...] = (
        ("di", "Container", DiAdapter),
        ("dependency_injector.containers", "Container", DependencyInjectorAdapter),
        ("dishka", "AsyncContainer", DishkaAdapter),
    )
    for module, name, adapter in known:
        cls = _loaded_class(module, name)
        if cls is not None and isinstance(container, cls):
            return adapter(container)
    if isinstance(container, Container):
        return ResolvingAdapter(container)
    raise TypeError(
        f"{type(container).__qualname__} is not a supported container: pass a di.Container, a "
        "dependency_injector or dishka container, an object with `async def resolve(type_)`, a "
        "mediator.container.ContainerAdapter, or None"
    )


class Resolver:
    """Builds handler instances through the mediator's adapter, with its plain factories cached."""

    def __init__(self, container: object | None) -> None:
        self.adapter = adapter_for(container)
        self._factories: dict[type, Factory | None] = {}
        self._direct: dict[type, Factory | None] = {}

    def plain_factory(self, type_: type[T]) -> typing.Callable[[], T] | None:
        """A callable that returns a ready instance of ``type_`` (nothing to await); None when only
        :meth:`resolve` can build it. For hot paths: no coroutine per instance."""
        try:
            return self._factories[type_]
        except KeyError:
            factory = self._factories[type_] = self.adapter.plain_factory(type_)
            return factory

    def direct_factory(self, type_: type[T]) -> DirectFactory[T] | None:
        """A callable that returns an instance of ``type_`` or an awaitable of one (see
        :func:`needs_await`): the plain factory if there is one, else the adapter's direct factory; None
        when only :meth:`resolve` can build it."""
        try:
            return self._direct[type_]
        except KeyError:
            factory = self.plain_factory(type_) or self.adapter.direct_factory(type_)
            self._direct[type_] = factory
            return factory

    async def resolve(self, type_: type[T]) -> T:
        """A fresh instance of ``type_``."""
        factory = self.plain_factory(type_)
        if factory is not None:
            return factory()
        return await self.adapter.resolve(type_)


def needs_await(built: object, type_: type) -> bool:
    """Whether what a direct factory of ``type_`` returned is an awaitable of the instance rather
    than the instance. The exact type is told first: it is what providers build, and cheap."""
    return type(built) is not type_ and inspect.isawaitable(built) and not isinstance(built, type_)
