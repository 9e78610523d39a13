"""A command's typer options, generated from its settings dataclass (help and default in field metadata).

``settings_command`` builds the function typer registers: its signature is the command's own
arguments, one option per settings field (voxuda_cli/fields.py says how a field describes itself),
the command's extra options, then --config, --json and -v. The function resolves the settings
(defaults < --config < options given) and calls ``run(settings, **the other parameters)``.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from voxuda_cli.cli.common import ConfigOpt, JsonOpt, VerboseOpt, cli_errors, setup_logging
from voxuda_cli.config import resolve_settings
from voxuda_cli.fields import help_text
from voxuda_cli.io.outputs import check_output_path

Resolve = Callable[[type, Path | None, str, dict[str, Any], dict[str, Any]], Any]


def param(name: str, annotation: Any, default: Any = inspect.Parameter.empty) -> inspect.Parameter:
    """A command parameter that is not a setting (an argument, -o, --preview, --resume ...)."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def cli_fields(settings_cls: type) -> list[dataclasses.Field[Any]]:
    """The settings fields that are command-line options."""
    return [f for f in dataclasses.fields(settings_cls) if f.metadata.get("cli", True)]


def option_flags(field: dataclasses.Field[Any], annotation: Any) -> tuple[str, ...]:
    if "flags" in field.metadata:
        return tuple(field.metadata["flags"])
    flag = "--" + field.name.replace("_", "-")
    return (f"{flag}/--no-{flag[2:]}",) if annotation is bool else (flag,)


def _cli_type(annotation: Any) -> Any:
    """What typer reads for a field of this type: tuples of any length as repeatable lists."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        return _cli_type(next(a for a in args if a is not type(None)))
    if typing.get_origin(annotation) is tuple and len(args) == 2 and args[1] is Ellipsis:
        return list[args[0]]  # type: ignore[valid-type]  # a runtime-built type for typer, not an annotation
    return annotation


def option_parameter(settings_cls: type, field: dataclasses.Field[Any]) -> inspect.Parameter:
    """The typer option of one settings field; ``None`` (not given) lets the config or default apply."""
    annotation = typing.get_type_hints(settings_cls)[field.name]
    cli_type = field.metadata.get("cli_type", _cli_type(annotation))
    option = typer.Option(*option_flags(field, cli_type), help=help_text(field))
    return param(field.name, Annotated[cli_type | None, option], None)


# The parameters of the commands that name something they write, with the flag a message shows.
OUTPUT_PARAMETERS = {
    "output": "-o",
    "output_arg": "OUTPUT",
    "preview": "--preview",
    "paste": "--paste",
    "csv": "--csv",
    "instances": "--instances",
}


def default_resolve(
    settings_cls: type, config: Path | None, name: str, values: dict[str, Any], extras: dict[str, Any]
) -> Any:
    return resolve_settings(settings_cls, config, name, **values)


def settings_command(
    name: str,
    settings_cls: type,
    run: Callable[..., None],
    arguments: list[inspect.Parameter] | tuple[()] = (),
    extras: list[inspect.Parameter] | tuple[()] = (),
    resolve: Resolve = default_resolve,
) -> Callable[..., None]:
    """The typer command of ``settings_cls``: ``run(settings, **arguments_and_extras, as_json=...)``."""
    fields = cli_fields(settings_cls)
    common = [param("config", ConfigOpt, None), param("as_json", JsonOpt, False), param("verbose", VerboseOpt, False)]

    def command(**given: Any) -> None:
        setup_logging(given.pop("verbose"))
        with cli_errors(name):
            values = {}
            for field in fields:
                value = given.pop(field.name)
                parse = field.metadata.get("parse")
                values[field.name] = parse(value) if parse is not None and value is not None else value
            config = given.pop("config")
            for key, flag in OUTPUT_PARAMETERS.items():  # before any input is read or work is done
                if isinstance(given.get(key), Path):
                    check_output_path(given[key], flag)
            run(resolve(settings_cls, config, name, values, given), **given)

    parameters = [*arguments, *(option_parameter(settings_cls, f) for f in fields), *extras, *common]
    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]  # typer reads __signature__; functions accept the attribute
    command.__name__ = name.replace("-", "_")
    return command
