"""System checks of the shared request budget's settings (ids E020-E022, W005-W007).

:func:`check_rate_limits` (the settings' values) runs as part of
:func:`hubspot_connect.checks.check_settings`. Whether the cache can hold one budget for
the whole site (W005-W007) is a deployment check (``manage.py check --deploy``): a
local-memory cache is what every development site has, and is right for one process.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.cache.backends.db import DatabaseCache
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.utils.module_loading import import_string

from .conf import DEFAULT_RATE_LIMIT, DEFAULT_SEARCH_RATE_LIMIT, rate_limit_value

LIMITS = (
    ("HUBSPOT_RATE_LIMIT", DEFAULT_RATE_LIMIT, "hubspot_connect.E020"),
    ("HUBSPOT_SEARCH_RATE_LIMIT", DEFAULT_SEARCH_RATE_LIMIT, "hubspot_connect.E021"),
)


def _limits_on() -> bool | None:
    """Whether a limit is on; ``None`` if a setting is invalid (reported elsewhere)."""
    try:
        values = [
            rate_limit_value(getattr(settings, name, default)) for name, default, _ in LIMITS
        ]
    except ValueError:
        return None
    return any(value is not None for value in values)


def _backend(alias: str) -> type | None:
    try:
        backend = import_string(str(settings.CACHES[alias]["BACKEND"]))
    except (ImportError, KeyError, TypeError):
        return None  # Django's own cache checks report a broken CACHES entry
    return backend if isinstance(backend, type) else None


def check_rate_limits() -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    for name, default, check_id in LIMITS:
        try:
            rate_limit_value(getattr(settings, name, default))
        except ValueError:
            errors.append(
                Error(
                    f"{name} must be None or (requests, seconds): a whole number of "
                    "requests and a number of seconds, both positive.",
                    hint=f"Remove it to use HubSpot's limit {default}, or set None to send "
                    "without a shared budget.",
                    id=check_id,
                )
            )
    alias = getattr(settings, "HUBSPOT_RATE_LIMIT_CACHE", "default")
    if not _limits_on():
        return errors
    if not isinstance(alias, str) or alias not in getattr(settings, "CACHES", {}):
        errors.append(
            Error(
                f"HUBSPOT_RATE_LIMIT_CACHE {alias!r} is not an alias in CACHES.",
                hint="Name the cache that holds the shared request budget (every process "
                "must share it, e.g. Redis), or remove the setting to use 'default'.",
                id="hubspot_connect.E022",
            )
        )
        return errors
    return errors


@register(Tags.caches, deploy=True)
def check_rate_limit_cache(
    app_configs: Sequence[Any] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """W005-W007: a cache that does not hold one budget for the whole site."""
    alias = getattr(settings, "HUBSPOT_RATE_LIMIT_CACHE", "default")
    if not isinstance(alias, str) or alias not in getattr(settings, "CACHES", {}):
        return []
    backend = _backend(alias)
    if not _limits_on() or backend is None:
        return []
    where = f"The cache '{alias}' (HUBSPOT_RATE_LIMIT_CACHE) is a {backend.__name__}"
    shared = "(Redis, Memcached; a separate CACHES alias is fine)"
    if issubclass(backend, LocMemCache):
        return [
            Warning(
                f"{where}: each process keeps its own request budget, so several processes "
                "together can exceed HubSpot's limits and get 429 answers.",
                hint=f"Point HUBSPOT_RATE_LIMIT_CACHE at a cache every process shares {shared}. "
                "With a single process the local cache is right: add this id to "
                "SILENCED_SYSTEM_CHECKS.",
                id="hubspot_connect.W005",
            )
        ]
    if issubclass(backend, DummyCache):
        return [
            Warning(
                f"{where}: it stores nothing, so the request budget limits nothing.",
                hint=f"Point HUBSPOT_RATE_LIMIT_CACHE at a cache every process shares {shared}, "
                "or set HUBSPOT_RATE_LIMIT = None and HUBSPOT_SEARCH_RATE_LIMIT = None.",
                id="hubspot_connect.W006",
            )
        ]
    if issubclass(backend, (DatabaseCache, FileBasedCache)):
        return [
            Warning(
                f"{where}, whose incr() is not atomic: processes calling at once can exceed "
                "the request budget.",
                hint=f"Keep the request budget in Redis or Memcached {shared}.",
                id="hubspot_connect.W007",
            )
        ]
    return []
