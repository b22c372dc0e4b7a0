"""Experiment configs: YAML and ``--a.b.c=value`` overrides fill typed, frozen dataclasses.

YAML only supplies values; the dataclasses define every default and validate themselves. A wrong
field, type or value is a one-line :class:`ConfigError` naming the field and the valid choices.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml


class ConfigError(ValueError):
    """A config value that cannot be used; the message names the field."""


def check_choice(name: str, value: object, choices: tuple) -> None:
    """Raise a one-line ``ValueError`` naming the field and its valid choices."""
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not valid; choose one of {', '.join(map(str, choices))}")


# ---------------------------------------------------------------------------------------------
# Generic machinery


def from_dict(cls: type, data: dict[str, Any] | None, where: str = "") -> Any:
    """Build dataclass ``cls`` from plain data, checking field names, types and choices."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        name = where.rstrip(".") or cls.__name__
        raise ConfigError(f"{name}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    for key in data:
        if key not in names:
            raise ConfigError(f"{where}{key}: unknown field; valid fields: {', '.join(names)}")
    kwargs = {key: _convert(hints[key], value, f"{where}{key}") for key, value in data.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as error:
        prefix = f"{where.rstrip('.')}: " if where else ""
        raise ConfigError(f"{prefix}{error}") from None


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return value if isinstance(value, tp) else from_dict(tp, value, where + ".")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}={value!r} is not valid; choose one of {', '.join(map(str, args))}")
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(option, value, where)
            except ConfigError as error:
                errors.append(str(error))
        if len(errors) == 1:
            raise ConfigError(errors[0])
        allowed = " or ".join(getattr(a, "__name__", str(a)) for a in args)
        raise ConfigError(f"{where}={value!r}: expected {allowed}, got {type(value).__name__}")
    if origin in (tuple, list) and isinstance(value, (list, tuple)):
        inner = args[0] if args else Any
        return tuple(_convert(inner, v, f"{where}[{i}]") for i, v in enumerate(value))
    return _convert_scalar(tp, value, where)


def _convert_scalar(tp: Any, value: Any, where: str) -> Any:
    if tp is Any:
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp in (bool, str) and isinstance(value, tp):
        return value
    if tp is Path and isinstance(value, (str, Path)):
        return Path(value)
    if typing.get_origin(tp) is dict and isinstance(value, dict):
        return value
    name = getattr(tp, "__name__", str(tp))
    raise ConfigError(f"{where}={value!r}: expected {name}, got {type(value).__name__}")


def to_dict(config: Any) -> dict[str, Any]:
    """Plain, YAML/JSON-safe data of a config (tuples become lists, paths strings)."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return str(value) if isinstance(value, Path) else value

    return plain(dataclasses.asdict(config))


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """``["--model.encoder.num_layers=4", "--trainer.max_steps", "10"]`` -> nested dict.

    Values are read as YAML scalars (``4`` is an int, ``true`` a bool, ``[1, 2]`` a list).
    """
    overrides: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or arg == "--":
            raise ConfigError(f"{arg}: expected an override like --section.field=value")
        key, sep, text = arg[2:].partition("=")
        if not sep:
            if i + 1 >= len(args):
                raise ConfigError(f"--{key}: missing value")
            i, text = i + 1, args[i + 1]
        node = overrides
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(text)
        i += 1
    return overrides


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``update`` wins."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data or {}
