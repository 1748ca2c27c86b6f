"""Config dataclasses loaded from YAML or a command line, with unknown keys and wrong types rejected by name.

The pattern (nanoGPT's, as dataclasses): defaults live in the dataclass, a YAML file or a dict
overrides them, and anything the dataclass does not know is an error that names the key. Every
command builds its options from its config the same way (trl's pattern): ``config_parser`` gives one
option per field (``--max-examples``, also ``--max_examples``), its help from the field's comment,
``args_to_values`` reads what was given, and a bad value is a ``ConfigError`` the command prints on
stderr with exit status ``USAGE_ERROR``.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import math
import signal
import sys
import threading
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence, TypeVar

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


# -- the command line of a config -------------------------------------------------------------------

USAGE_ERROR = 2   # the exit status of a bad option or value, for every command (argparse's own)


def field_help(cls: type) -> dict[str, str]:
    """Each field's help: its ``metadata["help"]``, else the comment after it in the class's source (with
    the comment lines that continue it), where a nanoGPT-style config documents its fields."""
    helps = {f.name: f.metadata["help"] for f in dataclasses.fields(cls) if "help" in f.metadata}
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return helps
    current = None
    for line in lines:
        code, _, comment = line.partition("#")
        stripped = code.strip()
        if stripped and ":" in stripped and not stripped.startswith(("def ", "class ", "@", '"', "'")):
            name = stripped.split(":", 1)[0].strip()
            current = name if name.isidentifier() else None
            if current and comment.strip() and current not in helps:
                helps[current] = comment.strip()
            elif current in helps and not comment.strip():
                current = None
        elif not stripped and comment.strip() and current in helps:
            helps[current] += " " + comment.strip()
        else:
            current = None
    return helps


def _flags(name: str, aliases: Mapping[str, Sequence[str]]) -> list[str]:
    flags = [f"--{name.replace('_', '-')}"] + ([f"--{name}"] if "_" in name else [])
    return flags + [a for a in aliases.get(name, ()) if a not in flags]


def _base_type(hint: Any) -> Any:
    """``X | None`` -> X."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else Any
    return hint


def config_parser(cls: type, prog: str, description: str = "", *, aliases: Mapping[str, Sequence[str]] | None = None,
                  exclude: Sequence[str] = (), parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """An argparse parser with one option per field of ``cls`` (an option not given keeps what the config
    file or the dataclass says). Lists take several values or a comma-separated one; mappings take
    ``KEY=VALUE``, repeatable; booleans ``true``/``false`` (the flag alone means true)."""
    parser = parser or argparse.ArgumentParser(prog=prog, description=description)
    hints, helps = typing.get_type_hints(cls), field_help(cls)
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        hint = _base_type(hints[f.name])
        kind = typing.get_origin(hint) or hint
        options: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": helps.get(f.name, "")}
        if kind is list:
            options.update(nargs="*", action="extend", metavar="VALUE")
        elif kind is dict:
            options.update(action="append", metavar="KEY=VALUE")
        elif kind is bool:
            options.update(nargs="?", const="true", metavar="true|false")
        parser.add_argument(*_flags(f.name, aliases or {}), **options)
    return parser


def _scalar(text: str, hint: Any) -> Any:
    """A command-line value for a field: strings as written; other types read as YAML (8 -> int, true ->
    bool, null -> None); what is wrong is ``from_dict``'s to say."""
    if hint is str:
        return text
    try:
        return yaml.safe_load(text) if text != "" else None
    except yaml.YAMLError:
        return text


def args_to_values(cls: type, args: argparse.Namespace | Mapping[str, Any], option: str = "command line") -> dict[str, Any]:
    """The fields given on a command line (``config_parser``'s namespace), as values for ``from_dict``."""
    given = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in given:
            continue
        raw, hint = given[f.name], _base_type(hints[f.name])
        kind = typing.get_origin(hint) or hint
        if kind is list:
            items = []
            for text in raw:
                if text.startswith("["):
                    items += _scalar(text, Any) or []
                else:
                    items += [part.strip() for part in text.split(",") if part.strip()]
            item_hint = (typing.get_args(hint) or (Any,))[0]
            values[f.name] = [_scalar(i, item_hint) if isinstance(i, str) else i for i in items]
        elif kind is dict:
            values[f.name] = parse_key_values(raw, f"--{f.name.replace('_', '-')}")
        else:
            values[f.name] = _scalar(raw, hint)
    return values


def usage_error(prog: str, error: Exception | str) -> int:
    """Say a bad option or value on stderr, once, and return USAGE_ERROR."""
    print(f"{prog}: {error}", file=sys.stderr)
    return USAGE_ERROR


INTERRUPTED = 130   # the exit status of a command stopped by Ctrl-C (128 + SIGINT), for every command


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Ctrl-C (SIGINT) interrupts the command even when it was inherited as ignored: a script's
    background job (``cmd &``), nohup and many CI runners start commands that way, and the command
    would otherwise go on to the end (and write its results over the last ones). Inside, Ctrl-C raises
    KeyboardInterrupt; the command saves nothing half-made and exits INTERRUPTED."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
