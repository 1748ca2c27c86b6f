"""Config dataclasses loaded from YAML, with unknown keys and wrong types rejected by name.

The pattern (nanoGPT's, as dataclasses): defaults live in the dataclass, a YAML file or a dict
overrides them, and anything the dataclass does not know is an error that names the key.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A bad config; the message names the field (and the file when there is one)."""


def _check_type(name: str, value: Any, annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(name, value, arg)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{name}: bad value {value!r}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: expected a list, got {type(value).__name__} {value!r}")
        return [_check_type(f"{name}[{i}]", v, args[0] if args else Any) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if annotation is Any:
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true/false, got {type(value).__name__} {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if annotation is float:
        # YAML 1.1 reads '2e-4' (no dot) as a string: accept numeric strings for float fields.
        number = value
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise ConfigError(f"{name}: expected a number, got {type(value).__name__} {value!r}")
        if not math.isfinite(number):  # .nan / .inf in YAML, "nan" on a command line: never a setting
            raise ConfigError(f"{name}: expected a finite number, got {value!r}")
        return float(number)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {type(value).__name__} {value!r}")
        return value
    return value


def from_dict(cls: type[T], values: Mapping[str, Any], source: str = "config") -> T:
    """Instantiate dataclass ``cls`` from ``values``; unknown keys and wrong types raise ConfigError."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{source}: expected a mapping of fields, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown}; known keys: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    checked = {}
    for key, value in values.items():
        try:
            checked[key] = _check_type(key, value, hints[key])
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
    obj = cls(**checked)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
    return obj


def read_yaml(path: str | Path) -> Any:
    """The YAML document in ``path``. ConfigError naming the file (and the line and column of a syntax
    error) for a missing file, text that is not UTF-8 or invalid YAML."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)  # PyYAML would name the file "<unicode string>"
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None


def load_config(cls: type[T], path: str | Path | None = None, **overrides: Any) -> T:
    """Defaults of ``cls``, overridden by the YAML file at ``path``, then by ``overrides``."""
    values: dict[str, Any] = {}
    source = "config"
    if path is not None:
        path = Path(path)
        loaded = read_yaml(path) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of fields at the top level")
        values.update(loaded)
        source = str(path)
    values.update(overrides)
    return from_dict(cls, values, source)


def config_from_namespace(cls: type[T], namespace: Mapping[str, Any], before: set[str]) -> T:
    """Build a config in a notebook from its ``parameters`` cell (plus papermill's injected cell).

    ``before`` is ``set(globals())`` taken just before the parameters cell. Every name that appeared
    since must be a field of ``cls``: a parameter papermill injected that the notebook does not know
    is an error, as it is in a YAML file.
    """
    new = {k for k in namespace if k not in before and not k.startswith("_")}
    unknown = sorted(new - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ConfigError(f"notebook parameters: unknown key(s) {unknown}")
    values = {f.name: namespace[f.name] for f in dataclasses.fields(cls) if f.name in namespace}
    return from_dict(cls, values, "notebook parameters")


def parse_key_values(items: Iterable[str], option: str) -> dict[str, Any]:
    """``KEY=VALUE`` command-line overrides of config fields; values are read as YAML (8 -> int,
    true -> bool, [q_proj, v_proj] -> list). ``option`` names the command-line option in errors."""
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise ConfigError(f"{option}: expected KEY=VALUE with KEY a Python name, got {item!r}")
        parsed[key] = yaml.safe_load(value) if value else ""
    return parsed


def comma_list(text: str | None) -> list[str]:
    """The items of a comma-separated setting, a command-line option or a variable: 'a, b,,c' -> [a, b, c]."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def dump_yaml(obj: Any, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(to_dict(obj), sort_keys=False), encoding="utf-8")
