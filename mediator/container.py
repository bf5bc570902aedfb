"""Where handlers come from: the DI container port and its adapters.

The mediator asks for a fresh handler for every request and every event it handles. It accepts:

- any object with ``async def resolve(type_) -> instance`` (the :class:`Container` protocol);
- a ``di.Container`` (the spec's ``di_container=di.Container()``);
- a ``dependency_injector`` container: the provider whose class is the handler type builds it;
- ``None``: handlers are built with no arguments.

What can be worked out once per handler type is cached: a ``di`` handler with no dependencies is
built by calling its class, exactly what ``di`` would do, without entering a scope per event.
"""

from __future__ import annotations

import inspect
import typing

__all__ = ["Container", "Resolver"]

T = typing.TypeVar("T")


@typing.runtime_checkable
class Container(typing.Protocol):
    """The DI port: build an instance of ``type_``."""

    async def resolve(self, type_: type[T]) -> T: ...


Factory: typing.TypeAlias = typing.Callable[[], typing.Any]


class Resolver:
    """Builds handler instances from whichever container the mediator was given."""

    def __init__(self, container: object | None) -> None:
        self._container = container
        self._factories: dict[type, Factory | None] = {}
        self._di_solved: dict[type, typing.Any] = {}
        self._slow: typing.Callable[[type], typing.Awaitable[typing.Any]]
        # dependency_injector providers return an awaitable when a dependency is async.
        self._may_await = False
        module = type(container).__module__
        if container is None:
            self._plan: typing.Callable[[type], Factory | None] = lambda type_: type_
        elif module.startswith("di.") or module == "di":
            self._plan = self._plan_di
            self._slow = self._resolve_di
        elif module.startswith("dependency_injector"):
            self._plan = self._plan_dependency_injector
            self._may_await = True
        elif isinstance(container, Container):
            self._plan = lambda type_: None
            self._slow = container.resolve
        else:
            raise TypeError(
                f"{type(container).__qualname__} is not a supported container: pass a di.Container, "
                "a dependency_injector container, an object with `async def resolve(type_)`, or None"
            )

    def _factory(self, type_: type) -> Factory | None:
        try:
            return self._factories[type_]
        except KeyError:
            factory = self._factories[type_] = self._plan(type_)
            return factory

    def plain_factory(self, type_: type[T]) -> typing.Callable[[], T] | None:
        """A callable that returns a ready instance of ``type_`` (nothing to await); None when only
        :meth:`resolve` can build it. For hot paths: no coroutine per instance."""
        factory = self._factory(type_)
        return None if factory is None or self._may_await else factory

    async def resolve(self, type_: type[T]) -> T:
        """A fresh instance of ``type_``."""
        factory = self._factory(type_)
        if factory is None:
            return typing.cast(T, await self._slow(type_))
        instance = factory()
        if self._may_await and inspect.isawaitable(instance):
            instance = await instance
        return typing.cast(T, instance)

    # -- di -------------------------------------------------------------------------------------
    def _solved_di(self, type_: type) -> typing.Any:
        from di.dependent import Dependent

        solved = self._di_solved.get(type_)
        if solved is None:
            container: typing.Any = self._container
            solved = container.solve(Dependent(type_, scope="request"), scopes=["request"])
            self._di_solved[type_] = solved
        return solved

    def _plan_di(self, type_: type) -> Factory | None:
        dag = self._solved_di(type_).dag
        if len(dag) == 1:
            (only,) = dag
            call = only.call
            if isinstance(call, type) and not dag[only]:
                return typing.cast(Factory, call)
        return None

    async def _resolve_di(self, type_: type) -> typing.Any:
        from di.executors import AsyncExecutor

        container: typing.Any = self._container
        solved = self._solved_di(type_)
        async with container.enter_scope("request") as state:
            return await solved.execute_async(executor=AsyncExecutor(), state=state)

    # -- dependency_injector ----------------------------------------------------------------------
    def _plan_dependency_injector(self, type_: type) -> Factory | None:
        # The provider of exactly ``type_`` wins; failing that, one of a subclass stands in for it.
        # traverse() walks a set, so "the first match" alone would vary from run to run.
        container: typing.Any = self._container
        stand_in: Factory | None = None
        for provider in container.traverse():
            provided = getattr(provider, "cls", None) or getattr(provider, "provides", None)
            if provided is type_:
                return typing.cast(Factory, provider)
            if stand_in is None and isinstance(provided, type) and issubclass(provided, type_):
                stand_in = typing.cast(Factory, provider)
        return stand_in if stand_in is not None else type_
