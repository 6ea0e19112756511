"""Typed, validated parameters: YAML mappings → frozen dataclasses.

``parse(Type, value, where)`` checks a value against a type hint and builds dataclasses field by
field. Any error names the full key (``degrade.cases[2].sigma_255``) and the offending value.
Dataclasses may define ``check(self, where)`` for cross-field rules, and a class may define
``from_param(value, where)`` to parse itself (used by :class:`~pipeline.degrade.draws.Draw`).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterable
from typing import Any, Literal, TypeVar, Union

T = TypeVar("T")


class ConfigError(ValueError):
    """A parameter is unknown, missing, of the wrong type or impossible."""


def fail(where: str, value: Any, why: str) -> ConfigError:
    return ConfigError(f"{where} = {value!r}: {why}")


def named_mapping(
    value: Any, where: str, kind: str, known: Iterable[str], unknown: str
) -> tuple[str, dict[str, Any]]:
    """``(name, the other keys)`` of a ``{name: ..., <params>}`` mapping (a bare string is the
    name alone); ``kind`` words the shape error (``a case``), ``unknown`` the error for a name
    not in ``known`` (``unknown noise case``)."""
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or "name" not in value:
        raise fail(where, value, f"{kind} is a mapping with a 'name' (and its parameters)")
    rest = dict(value)
    name = rest.pop("name")
    known = list(known)
    if name not in known:
        raise ConfigError(f"{where}.name = {name!r}: {unknown} (known: {', '.join(known)})")
    return name, rest


def parse(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return parse(option, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else " / ".join(errors))
    if origin is Literal:
        if value not in args:
            raise fail(where, value, f"must be one of {list(args)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise fail(where, value, "must be a list")
        item = args[0] if args else Any
        items = [parse(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise fail(where, value, "must be a mapping")
        kt, vt = args or (str, Any)
        return {
            parse(kt, k, f"{where}.{k}"): parse(vt, v, f"{where}.{k}") for k, v in value.items()
        }
    if isinstance(tp, type) and hasattr(tp, "from_param"):
        return tp.from_param(value, where)
    if dataclasses.is_dataclass(tp):
        return parse_dataclass(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise fail(where, value, "must be true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(where, value, "must be an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise fail(where, value, "must be a number")
        if not math.isfinite(value):
            raise fail(where, value, "must be finite")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise fail(where, value, "must be a string")
        return value
    raise TypeError(f"{where}: unsupported parameter type {tp!r}")


def parse_dataclass(cls: type[T], value: Any, where: str) -> T:
    if value is None:
        value = {}
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    if not isinstance(value, dict):
        # A YAML list or scalar where a section (key: value lines) belongs.
        raise fail(
            where or "the top level",
            value,
            f"must be a mapping of keys ({', '.join(sorted(fields))}), not a {_kind(value)}",
        )
    hints = typing.get_type_hints(cls)
    unknown = sorted((k for k in value if k not in fields), key=str)
    if unknown:
        raise ConfigError(unknown_keys(where, unknown, sorted(fields)))
    kwargs = {}
    for name, f in fields.items():
        key = join(where, name)
        if name in value:
            kwargs[name] = parse(hints[name], value[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key}: missing required key")
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if check is not None:
        check(where)
    return obj


def unknown_keys(where: str, keys: list[Any], allowed: list[str]) -> str:
    """``sead: unknown key (did you mean 'seed'? allowed at the top level: ...)``."""
    import difflib

    names = ", ".join(join(where, str(k)) for k in keys)
    hints = []
    for k in keys:
        close = difflib.get_close_matches(str(k), allowed, n=1)
        if close:
            hints.append(f"did you mean {join(where, close[0])!r} for {str(k)!r}?")
    place = f"under {where}" if where else "at the top level"
    noun = "unknown key" if len(keys) == 1 else "unknown keys"
    hints.append(f"allowed {place}: " + ", ".join(allowed))
    return f"{names}: {noun} ({' '.join(hints)})"


def _kind(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "list"
    return type(value).__name__


def join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def to_plain(obj: Any) -> Any:
    """Dataclasses (and objects with ``to_param``) back to plain YAML/JSON values."""
    if hasattr(obj, "to_param"):
        return obj.to_param()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj


def require(cond: bool, where: str, value: Any, why: str) -> None:
    if not cond:
        raise fail(where, value, why)


def require_choices(where: str, values: list[str], known: tuple[str, ...]) -> None:
    """A non-empty list of distinct names, each one of ``known``; the error names the item."""
    require(len(values) > 0, where, values, "needs at least one")
    require(len(set(values)) == len(values), where, values, "listed twice")
    for i, v in enumerate(values):
        require(v in known, f"{where}[{i}]", v, f"unknown (known: {', '.join(known)})")
