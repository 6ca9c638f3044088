"""What every flowcli command shares, applied once to each command as it is built:
plain, readable help (``SESSION_ID``, ``N``, ``SECONDS`` instead of Typer's
``{session_id}`` and ``<int range>``), the options every command accepts (``-q``,
``-V``, ``--no-pager``), and usage errors folded into one line.

Kept apart from the commands so that no command module has to remember any of it.
"""

from __future__ import annotations

import re
from typing import Any

import typer
from typer.core import TyperArgument

from flowcli import __version__

_SECONDS = re.compile(r"timeout|interval|poll|lease|idle|backoff")


class ReadableArgument(TyperArgument):
    """An argument shown as ``SESSION_ID`` (optional: ``[SESSION_ID]``) in usage lines."""

    def make_metavar(self, ctx: Any, *, usage: bool = False) -> str:
        var = self.metavar or (self.name or "").upper()
        if self.nargs != 1:
            var += "..."
        if usage and not self.required:
            return f"[{var}]"
        return var


def option_metavar(param: Any) -> str | None:
    """A metavar a reader understands, from the option's type and name (None: Click's
    own, which for a choice lists the choices)."""
    from typer._click import types as ctypes

    kind = param.type
    name = (param.name or "").lower()
    if getattr(kind, "choices", None):
        return None
    # A bounded number (flowcli.cli.params.BoundedNumber) parses through a function.
    number = getattr(getattr(kind, "func", None), "kind", None)
    if isinstance(kind, ctypes.IntParamType) or number is int:
        return "ID" if name in ("flow", "session", "at") else "N"
    if isinstance(kind, ctypes.FloatParamType) or number is float:
        return "SECONDS" if _SECONDS.search(name) else "NUMBER"
    if name in ("output", "file") or getattr(kind, "name", None) == "path":
        return "PATH"
    if name in ("since",):
        return "TIME"
    if name in ("older_than",):
        return "DURATION"
    if name in ("where", "break_when"):
        return "EXPR"
    if name in ("db",):
        return "PATH_OR_URL"
    if name in ("llm_base_url",):
        return "URL"
    return "TEXT"


def _set_quiet(ctx: Any, param: Any, value: bool) -> bool:
    if value:
        from flowcli.render.output import settings

        settings().quiet = True
    return value


def _no_pager(ctx: Any, param: Any, value: bool) -> bool:
    if value:
        from flowcli.render.output import settings

        settings().pager = None
    return value


def print_version(ctx: Any, param: Any, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        typer.echo(f"flowcli {__version__}")
        raise typer.Exit()


def _global_options() -> list[Any]:
    from typer.core import TyperOption

    return [
        TyperOption(
            param_decls=["--quiet", "-q"],
            is_flag=True,
            default=False,
            expose_value=False,
            callback=_set_quiet,
            help="No notes or progress on stderr (errors and warnings still show).",
        ),
        TyperOption(
            param_decls=["--no-pager"],
            is_flag=True,
            default=False,
            expose_value=False,
            callback=_no_pager,
            help="Never page output, even when it is longer than the screen.",
        ),
        TyperOption(
            param_decls=["--version", "-V"],
            is_flag=True,
            default=False,
            expose_value=False,
            is_eager=True,
            callback=print_version,
            help="Print flowcli's version and exit.",
        ),
    ]


def shape_subcommand(sub: Any) -> Any:
    """``shape_command`` for a group's subcommand, whose short help the group lists."""
    shape_command(sub)
    # The whole first paragraph, wrapped, rather than Click's cut at 45 characters.
    if not sub.short_help and sub.help:
        sub.short_help = " ".join(sub.help.strip().split("\n\n")[0].split())
    return sub


def shape_command(command: Any, *, root: bool = False) -> Any:
    """Give ``command`` (and its subcommands) flowcli's help shape and global options."""
    command.rich_markup_mode = None
    subcommands = getattr(command, "commands", None)
    if subcommands:
        for sub in subcommands.values():
            shape_subcommand(sub)
    from flowcli.cli.completion import attach_id_completion

    for param in command.params:
        attach_id_completion(param)
        if param.param_type_name == "argument":
            if isinstance(param, TyperArgument) and not isinstance(param, ReadableArgument):
                param.__class__ = ReadableArgument
        elif param.param_type_name == "option" and param.metavar is None and not param.is_flag:
            param.metavar = option_metavar(param)
    # A group built lazily (flowcli.cli.lazy) has no subcommands yet, but is a group.
    is_group = subcommands is not None
    if not root and not is_group:
        taken = {opt for p in command.params for opt in getattr(p, "opts", [])}
        for option in _global_options():
            if not set(option.opts) & taken:
                command.params.append(option)
    return command


def one_line_usage_error(exc: Any) -> str:
    """Click's usage block (Usage / Try / blank / Error) as one sentence naming --help."""
    from typer._click import exceptions as cexc

    ctx = getattr(exc, "ctx", None)
    path = ctx.command_path if ctx is not None else "flowcli"
    message = exc.format_message()
    if isinstance(exc, cexc.NoSuchOption) and re.fullmatch(r"-\d+(\.\d+)?", exc.option_name or ""):
        message = f"{exc.option_name} is not allowed here: ids and counts are positive numbers"
    elif isinstance(exc, cexc.MissingParameter):
        pass  # Click's own words ("Missing argument 'SESSION_ID'.") say it
    elif isinstance(exc, cexc.BadParameter) and exc.param is not None:
        message = _bad_parameter(exc)
    return f"{message} (see '{path} --help')"


def _bad_parameter(exc: Any) -> str:
    from typer._click import types as ctypes

    param = exc.param
    if param.param_type_name == "argument":
        label = (param.name or "").upper()
    else:
        label = param.opts[0] if param.opts else param.name
    kind = param.type
    detail = exc.message
    if isinstance(kind, ctypes._NumberRangeBase):
        whole = isinstance(kind, ctypes.IntParamType)
        low, high = kind.min, kind.max
        bounds = []
        if low is not None:
            bounds.append(f"at least {low}")
        if high is not None:
            bounds.append(f"at most {high}")
        noun = "a whole number" if whole else "a number"
        if "is not a valid" in detail:
            return f"{label} must be {noun}, not {_value_in(detail)}"
        if bounds:
            return f"{label} must be {' and '.join(bounds)}, not {_value_in(detail)}"
    if isinstance(kind, ctypes.IntParamType) and "is not a valid" in detail:
        return f"{label} must be a whole number, not {_value_in(detail)}"
    if isinstance(kind, ctypes.FloatParamType) and "is not a valid" in detail:
        return f"{label} must be a number, not {_value_in(detail)}"
    return f"{label}: {detail}"


def _value_in(detail: str) -> str:
    found = re.match(r"^('.*?'|\S+)", detail)
    return found.group(1) if found else detail
