"""Shell completion for bash, zsh and fish through Typer's (Click's) protocol.

The shell calls ``flowcli`` with ``_FLOWCLI_COMPLETE`` set (Typer's ``complete_bash`` or
Click's ``bash_complete`` spelling) and the words typed so far; flowcli answers with
command names, options, and session and flow ids read from the database. An id lookup
is bounded (the newest ``ID_LIMIT``, a short read-only query with a short timeout, in
``flowcli/db/completion_reads.py``) and
never creates a database: a missing file or any error completes nothing.
"""

from __future__ import annotations

import os
from typing import Any

COMPLETE_VAR = "_FLOWCLI_COMPLETE"
SHELLS = ("bash", "zsh", "fish")
ID_LIMIT = 200
_INSTRUCTIONS = ("complete", "source")


def normalise_instruction(value: str) -> str:
    """Accept both ``bash_complete`` (Click) and ``complete_bash`` (Typer)."""
    first, _, second = value.partition("_")
    if first in SHELLS + ("powershell", "pwsh") and second in _INSTRUCTIONS:
        return f"{second}_{first}"
    return value


def prepare() -> None:
    """Register Typer's completion classes (flowcli's root adds no Typer completion)."""
    from typer._completion_classes import completion_init

    completion_init()
    value = os.environ.get(COMPLETE_VAR)
    if value:
        os.environ[COMPLETE_VAR] = normalise_instruction(value)


def root_params() -> list[Any]:
    """``--install-completion`` and ``--show-completion`` on the root (for ``$SHELL``,
    else the shell flowcli runs under)."""
    from typer.core import TyperOption

    return [
        TyperOption(
            param_decls=["--install-completion"],
            is_flag=True,
            default=False,
            expose_value=False,
            is_eager=True,
            callback=_install,
            help="Install completion for $SHELL (bash, zsh or fish).",
        ),
        TyperOption(
            param_decls=["--show-completion"],
            is_flag=True,
            default=False,
            expose_value=False,
            is_eager=True,
            callback=_show,
            help="Print $SHELL's completion script, to install it by hand.",
        ),
    ]


def _shell() -> str:
    """$SHELL (the user's shell) when it is one flowcli completes, else the shell that
    runs flowcli, as shellingham detects it."""
    from flowcli.errors import UsageError

    shell = os.path.basename(os.environ.get("SHELL", ""))
    if shell not in SHELLS:
        try:
            import shellingham

            shell = str(shellingham.detect_shell()[0])
        except Exception:  # noqa: BLE001 - detection is a guess
            shell = shell or ""
    if shell not in SHELLS:
        raise UsageError(
            f"cannot tell which shell this is ({shell or 'unknown'}); flowcli completes "
            f"{', '.join(SHELLS)}: run it from one of them, or set SHELL"
        )
    return shell


def _show(ctx: Any, param: Any, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    import typer
    from typer._completion_shared import get_completion_script

    prepare()
    shell = _shell()
    typer.echo(get_completion_script(prog_name="flowcli", complete_var=COMPLETE_VAR, shell=shell))
    raise typer.Exit()


def _install(ctx: Any, param: Any, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    import typer
    from typer._completion_shared import install

    prepare()
    shell = _shell()
    installed_shell, path = install(shell=shell, prog_name="flowcli", complete_var=COMPLETE_VAR)
    typer.echo(f"{installed_shell} completion installed in {path}", err=True)
    typer.echo("It takes effect in a new shell.", err=True)
    raise typer.Exit()


# --- ids from the database ---------------------------------------------------------------


def _database_value(ctx: Any) -> str | None:
    root = ctx.find_root()
    value = root.params.get("db") if root.params else None
    if value:
        return str(value)
    if os.environ.get("FLOWCLI_DB"):
        return os.environ["FLOWCLI_DB"]
    try:
        from flowcli.config import load

        configured = load().file_value("database")
    except Exception:  # noqa: BLE001 - a broken config file completes nothing
        return None
    return str(configured) if configured else "flowcli.db"


def _rows(ctx: Any, read: Any) -> list[tuple[Any, ...]]:
    """(id, label) rows from ``read(database)``, or nothing: completion never fails the
    shell and never creates a database."""
    value = _database_value(ctx)
    if not value:
        return []
    try:
        return list(read(value, ID_LIMIT))
    except Exception:  # noqa: BLE001 - completion must never fail the shell
        return []


def _items(rows: list[tuple[Any, ...]], incomplete: str) -> list[Any]:
    from typer._click.shell_completion import CompletionItem

    from flowcli.render.safe_text import one_line

    items = []
    for ident, label in rows:
        value = str(ident)
        if value.startswith(incomplete):
            items.append(CompletionItem(value, help=one_line(label or "")[:60] or None))
    return items


def complete_session_ids(ctx: Any, param: Any, incomplete: str) -> list[Any]:
    from flowcli.db.completion_reads import newest_sessions

    return _items(_rows(ctx, newest_sessions), incomplete)


def complete_flow_ids(ctx: Any, param: Any, incomplete: str) -> list[Any]:
    from flowcli.db.completion_reads import newest_flows

    return _items(_rows(ctx, newest_flows), incomplete)


SESSION_PARAMS = {"session_id", "session_id_arg", "session", "session_a", "session_b"}
FLOW_PARAMS = {"flow_id", "flow"}


def attach_id_completion(param: Any) -> None:
    """Session and flow id parameters complete from the database."""
    from typer._click import types as ctypes

    if not isinstance(param.type, ctypes.IntParamType):
        return
    if param.name in SESSION_PARAMS:
        param._custom_shell_complete = complete_session_ids
    elif param.name in FLOW_PARAMS:
        param._custom_shell_complete = complete_flow_ids
