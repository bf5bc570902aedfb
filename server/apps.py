"""``python -m server --app MODULE:ATTR``: find the application to serve.

``ATTR`` names a sequence of :class:`~server.binding.ServiceBinding` (or an :class:`App`), or a
callable that takes the :class:`~server.settings.Settings` and returns one (so that the app builds
its mediators from ``settings.service("<name>")`` and its broker from ``settings.broker``).

An application that holds resources with a lifetime of their own (a database, a relay's task)
returns an :class:`App`: its ``resources`` are started, in order, before the server serves (a
store migrates its schema there; one that fails stops the start-up), and closed, in reverse order,
after the shutdown drain, when no event handler can use them any more::

    def services(settings: Settings) -> App:
        store = Store.from_settings(settings.database_url, settings.state_dir, settings.store)
        return App(bindings=[reports_binding(store)], resources=[store])
"""

from __future__ import annotations

import dataclasses
import importlib
import typing

from server.binding import ServiceBinding
from server.settings import Settings

__all__ = ["App", "AppError", "Resource", "load_services"]


@typing.runtime_checkable
class Resource(typing.Protocol):
    """What an application owns for as long as the server runs: opened by ``start``, closed by ``aclose``."""

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class App:
    """Service bindings and the resources they use (see the module docs)."""

    bindings: typing.Sequence[ServiceBinding]
    resources: typing.Sequence[Resource] = ()


Bindings: typing.TypeAlias = typing.Sequence[ServiceBinding]
Services: typing.TypeAlias = "Bindings | App | typing.Callable[[Settings], Bindings | App]"


class AppError(Exception):
    """``--app`` names nothing servable; the message says what and why."""


def load_services(spec: str) -> Services:
    """What ``MODULE:ATTR`` names, checked to be bindings or a callable (see the module docs)."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise AppError(f"--app {spec!r}: expected MODULE:ATTR, e.g. reports.app:services")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise AppError(f"--app {spec!r}: cannot import {module_name!r}: {error}") from error
    found: object = module
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise AppError(f"--app {spec!r}: {module_name!r} has no attribute {attribute!r}") from None
    if isinstance(found, App):
        return checked_app(found, f"--app {spec!r}")
    if callable(found) and not isinstance(found, ServiceBinding):
        return typing.cast("typing.Callable[[Settings], Bindings | App]", found)
    return checked_bindings(found, f"--app {spec!r}")


def checked_app(found: object, what: str) -> App:
    """``found`` as an :class:`App` (bindings alone: an app without resources), else :class:`AppError`."""
    if isinstance(found, App):
        wrong = [type(each).__qualname__ for each in found.resources if not isinstance(each, Resource)]
        if wrong:
            raise AppError(f"{what}: resources need async start() and aclose(), got {', '.join(wrong)}")
        return App(checked_bindings(found.bindings, what), tuple(found.resources))
    return App(checked_bindings(found, what))


def checked_bindings(found: object, what: str) -> Bindings:
    """``found`` if it is a non-empty sequence of bindings, else :class:`AppError` saying why."""
    if isinstance(found, ServiceBinding):
        return [found]
    if isinstance(found, (str, bytes)) or not isinstance(found, typing.Sequence | typing.Iterable):
        raise AppError(f"{what}: expected ServiceBinding objects, got {type(found).__qualname__}")
    bindings = list(typing.cast(typing.Iterable[object], found))
    wrong = [type(each).__qualname__ for each in bindings if not isinstance(each, ServiceBinding)]
    if wrong or not bindings:
        got = f"got {', '.join(wrong)}" if wrong else "got none"
        raise AppError(f"{what}: expected a sequence of ServiceBinding, {got}")
    return typing.cast(Bindings, bindings)
