"""``python -m server --app MODULE:ATTR``: find the application to serve.

``ATTR`` names a sequence of :class:`~server.binding.ServiceBinding`, or a callable that takes the
:class:`~server.settings.Settings` and returns one (so that the app builds its mediators from
``settings.service("<name>")`` and its broker from ``settings.broker``).
"""

from __future__ import annotations

import importlib
import typing

from server.binding import ServiceBinding
from server.settings import Settings

__all__ = ["AppError", "load_services"]

Bindings: typing.TypeAlias = typing.Sequence[ServiceBinding]
Services: typing.TypeAlias = "Bindings | typing.Callable[[Settings], Bindings]"


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
    if callable(found) and not isinstance(found, ServiceBinding):
        return typing.cast("typing.Callable[[Settings], Bindings]", found)
    return checked_bindings(found, f"--app {spec!r}")


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
