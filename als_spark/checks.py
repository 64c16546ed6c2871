"""The checks of configuration values: each returns what is wrong with a value, or ``None``."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, TypeGuard


def is_int(value: Any) -> TypeGuard[int]:
    """An ``int`` that is not a ``bool`` (YAML's ``true`` is not a number here)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> TypeGuard[int | float]:
    """An ``int`` or ``float`` that is not a ``bool``."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def positive_int(value: Any) -> str | None:
    return None if is_int(value) and value > 0 else "must be a positive integer"


def choice(options: tuple[str, ...]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in options else "must be one of " + ", ".join(options)

    return check


def non_negative_number(value: Any) -> str | None:
    return None if is_number(value) and value >= 0 else "must be a number >= 0"


def optional_number(value: Any) -> str | None:
    return None if value is None or (is_number(value) and not math.isnan(value)) else "must be a number or null"


def columns(defaults: Mapping[str, str | None], required: tuple[str, ...]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if not isinstance(value, Mapping):
            return "must be a mapping of role: column"
        unknown = sorted(str(k) for k in set(value) - set(defaults))
        if unknown:
            return f"has unknown role(s) {', '.join(unknown)}; the roles are {', '.join(defaults)}"
        for role, name in value.items():
            if name is None and role in required:
                return f"cannot map {role} to null: it is required"
            if name is not None and (not isinstance(name, str) or not name.strip()):
                return f"must map {role} to a column name or null"
        return None

    return check


def table_ref(roles: Mapping[str, str], formats: tuple[str, ...]) -> Callable[[Any], str | None]:
    """Check a table of ids: null, a path, or a mapping naming one path or table (see RecommendConfig)."""
    check_columns = columns(roles, tuple(roles))

    def check(value: Any) -> str | None:
        if value is None or (isinstance(value, str) and value.strip()):
            return None
        if not isinstance(value, Mapping):
            return "must be a path, or a mapping with a path or a table (and optionally format, options, columns)"
        unknown = sorted(str(k) for k in set(value) - {"path", "table", "format", "options", "columns"})
        if unknown:
            return f"has unknown key(s) {', '.join(unknown)}; the keys are path, table, format, options, columns"
        named = [k for k in ("path", "table") if value.get(k) is not None]
        if len(named) != 1 or not isinstance(value[named[0]], str) or not value[named[0]].strip():
            return "must name exactly one of path or table"
        if value.get("format", "auto") not in formats:
            return f"has format {value.get('format')!r}; the formats are {', '.join(formats)}"
        return options(value.get("options", {})) or check_columns(value.get("columns", {}))

    return check


def id_list(value: Any) -> str | None:
    if not isinstance(value, (list, tuple)):
        return "must be a list of item ids"
    if any(not (is_int(v) or (isinstance(v, str) and v)) for v in value):
        return "must list integer or string item ids"
    return None


def event_weights(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not value:
        return "must be a mapping of event type: weight (e.g. {view: 1, cart: 3, purchase: 5}) or null"
    for event, weight in value.items():
        if not isinstance(event, str) or not event:
            return f"has an event type that is not a name: {event!r}"
        if not is_number(weight) or not math.isfinite(weight) or weight < 0:
            return f"must give each event type a finite weight >= 0; {event!r} has {weight!r}"
    return None


def options(value: Any) -> str | None:
    if not isinstance(value, Mapping):
        return "must be a mapping of Spark reader option: value"
    for key, option in value.items():
        if not isinstance(key, str) or not isinstance(option, (str, int, float, bool)):
            return f"must map option names to strings, numbers or booleans; {key!r} has {option!r}"
    return None
