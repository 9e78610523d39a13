"""Settings dataclasses are the one source of defaults; this module fills them from TOML and CLI values.

Precedence: dataclass default < ``--config FILE.toml`` < options given on the command line.
A CLI option left at ``None`` means "not given", so the dataclass default (or the config) applies.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import tomllib

from voxuda_cli.errors import VoxudaInputError

SettingsT = TypeVar("SettingsT")


def default_of(settings_cls: type, field_name: str) -> Any:
    """The default of one settings field (for help texts), read from the dataclass itself."""
    for field in dataclasses.fields(settings_cls):
        if field.name == field_name:
            if field.default is not dataclasses.MISSING:
                return field.default
            if field.default_factory is not dataclasses.MISSING:
                return field.default_factory()
            return None
    raise KeyError(f"{settings_cls.__name__} has no field {field_name!r}")


def describe(settings_cls: type, field_name: str, text: str) -> str:
    """Help text with the dataclass default appended, so the default is written once."""
    default = default_of(settings_cls, field_name)
    if isinstance(default, (list, tuple)):
        default = " ".join(str(v) for v in default)
    return f"{text} [default: {default}]"


def load_config(path: Path, section: str) -> dict[str, Any]:
    """Read a TOML file; use the ``[section]`` table if present, else the top-level keys."""
    if not path.is_file():
        raise VoxudaInputError(f"{path}: config file not found; pass an existing TOML file to --config")
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise VoxudaInputError(f"{path}: not valid TOML ({exc}); fix the file or drop --config") from exc
    table = document.get(section.replace("-", "_"), document.get(section, None))
    if isinstance(table, dict):
        return dict(table)
    return {k: v for k, v in document.items() if not isinstance(v, dict)}


def resolve_settings(
    settings_cls: type[SettingsT],
    config: Path | None = None,
    section: str = "",
    **cli_values: Any,
) -> SettingsT:
    """Build settings from defaults, an optional TOML config and the CLI values that were given."""
    field_names = {f.name for f in dataclasses.fields(settings_cls)}  # type: ignore[arg-type]  # any settings dataclass (a type, not an instance)
    values: dict[str, Any] = {}
    if config is not None:
        loaded = load_config(config, section)
        unknown = sorted(set(k.replace("-", "_") for k in loaded) - field_names)
        if unknown:
            raise VoxudaInputError(
                f"{config}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(field_names))}"
            )
        values.update({k.replace("-", "_"): v for k, v in loaded.items()})
        check_types(settings_cls, values, config)
    for key, value in cli_values.items():
        if key not in field_names:
            raise KeyError(f"{settings_cls.__name__} has no field {key!r}")
        if value is not None:
            values[key] = value
    for field in dataclasses.fields(settings_cls):  # type: ignore[arg-type]  # any settings dataclass (a type, not an instance)
        # TOML has no tuples; keep the dataclass's own container type.
        if field.name in values and isinstance(values[field.name], list):
            default = default_of(settings_cls, field.name)
            if isinstance(default, tuple):
                values[field.name] = tuple(values[field.name])
    return settings_cls(**values)


def settings_to_dict(settings: Any) -> dict[str, Any]:
    """JSON/TOML-friendly dict of a settings dataclass (paths as strings, tuples as lists)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return {f.name: plain(getattr(settings, f.name)) for f in dataclasses.fields(settings)}


def dump_toml(values: dict[str, Any]) -> str:
    """Write a flat dict as TOML (only what settings hold: str, int, float, bool, lists, None skipped)."""
    lines = []
    for key, value in values.items():
        if value is None:
            continue
        lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def check_types(settings_cls: type, values: dict[str, Any], source: Path) -> None:
    """Refuse (one line) a config value whose TOML type cannot be the field's (``box = "big"``)."""
    hints = typing.get_type_hints(settings_cls)
    for name, value in values.items():
        expected = hints.get(name)
        if expected is not None and not _fits(value, expected):
            raise VoxudaInputError(
                f"{source}: {name} = {value!r} is not {_describe_type(expected)}; fix the value in the config file"
            )


def _fits(value: Any, expected: Any) -> bool:
    origin, arguments = typing.get_origin(expected), typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, option) for option in arguments)
    if origin is tuple or expected is tuple:
        if not isinstance(value, (list, tuple)):
            return False
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            return all(_fits(v, arguments[0]) for v in value)
        return not arguments or (len(value) == len(arguments) and all(map(_fits, value, arguments)))
    if expected is type(None):
        return value is None
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected in (str, Path):
        return isinstance(value, str)
    return True  # a type TOML cannot express: the settings' own checks judge it


def _describe_type(expected: Any) -> str:
    origin, arguments = typing.get_origin(expected), typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe_type(a) for a in arguments if a is not type(None))
    if origin is tuple:
        plurals = {bool: "true/false values", int: "integers", float: "numbers", str: "strings", Path: "paths"}
        count = "" if not arguments or arguments[-1] is Ellipsis else f"{len(arguments)} "
        return f"a list of {count}{plurals.get(arguments[0], 'values') if arguments else 'values'}"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", Path: "a path (string)"}
    return names.get(expected, getattr(expected, "__name__", str(expected)))
