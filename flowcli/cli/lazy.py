"""Commands loaded on demand: `flowcli logs 1` builds the `logs` group and nothing else.

Typer normally builds every command of the app (reading each function's signature) on
each invocation; with ~40 commands that is most of `flowcli --help`'s start-up. The root
group here knows each command's module and one-line help, lists them from that table,
and imports and builds only the command that runs. A test holds the table's help lines
equal to the commands' own.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, NamedTuple, cast

import typer
from typer.core import TyperGroup

from flowcli.cli.boundary import FlowcliGroup, print_error


class LazyCommand(NamedTuple):
    """A command listed in `flowcli --help` whose module is imported only when run."""

    module: str
    attr: str  # a typer.Typer (a group) or a command function
    help: str  # the line shown in `flowcli --help`


COMMANDS: dict[str, LazyCommand] = {
    "db": LazyCommand(
        "flowcli.cli.db",
        "app",
        "Create, migrate, inspect, back up and prune the database.",
    ),
    "flow": LazyCommand(
        "flowcli.cli.flow",
        "app",
        "Define flows in YAML/JSON files and store them.",
    ),
    "role": LazyCommand(
        "flowcli.cli.role",
        "app",
        "Add, list and show roles.",
    ),
    "session": LazyCommand(
        "flowcli.cli.session",
        "app",
        "Create, list, show and control sessions.",
    ),
    "logs": LazyCommand(
        "flowcli.cli.logs",
        "app",
        "Step execution logs: `flowcli logs SESSION_ID` shows a session's table; "
        "`show`, `stats` and `timeline` look closer.",
    ),
    "log": LazyCommand(
        "flowcli.cli.logs",
        "show",
        "One execution in full: every column, its JSON, and its context's diff against "
        "the session's previous execution.",
    ),
    "run-next": LazyCommand(
        "flowcli.cli.run",
        "run_next",
        "Execute the next step of a session (starting it if it has not started).",
    ),
    "auto": LazyCommand(
        "flowcli.cli.run",
        "auto",
        "Run a session to its end (or until a stop condition), logging every step.",
    ),
    "explain": LazyCommand(
        "flowcli.cli.run",
        "explain",
        "Say why the next step is next: condition, loop counters, round, limits. Writes nothing.",
    ),
    "demo": LazyCommand(
        "flowcli.cli.run",
        "demo",
        "Import the shipped demo flow, create a session, run it to the end, show its logs.",
    ),
    "worker": LazyCommand(
        "flowcli.cli.worker",
        "worker",
        "Run the steps of every running session (not_started ones wait for `session start`).",
    ),
    "batch": LazyCommand(
        "flowcli.cli.batch",
        "app",
        "Batches of session actions (`--where`): list them, show one, resume one.",
    ),
    "config": LazyCommand(
        "flowcli.cli.config",
        "app",
        "Show the effective settings and where each comes from; write a starter file.",
    ),
    "tui": LazyCommand(
        "flowcli.cli.tui",
        "tui",
        "A live, keyboard-first session debugger: logs, transcript, explain, breakpoints, "
        "step, run, fork and diff (needs `pip install 'flowcli[tui]'`; `?` lists the keys).",
    ),
}


def build_command(name: str, spec: LazyCommand) -> Any:
    from flowcli.cli.conventions import shape_command

    obj = getattr(importlib.import_module(spec.module), spec.attr)
    if isinstance(obj, typer.Typer):
        command = _lazy_group(obj)
    else:
        single = typer.Typer(add_completion=False)
        single.command(name)(obj)
        command = typer.main.get_command(single)
    command.name = name
    return shape_command(command)


def _lazy_group(app: typer.Typer) -> Any:
    """A group (``session``, ``db``…) built without its subcommands, each converted
    from its function when it is looked up: `flowcli session show 1` reads the
    signature of ``show`` and not of the group's thirty others."""
    from copy import copy

    shell = copy(app)
    # Completion is served by the root (`flowcli --install-completion`), not each group.
    shell._add_completion = False
    shell.registered_commands = []
    group = typer.main.get_group(shell)
    if type(group) is not TyperGroup or app.registered_groups:
        app._add_completion = False
        return typer.main.get_command(app)  # a shape this does not know: built whole
    group.__class__ = LazySubcommandGroup
    lazy = cast(LazySubcommandGroup, group)
    lazy.pending = {
        info.name or typer.main.get_command_name(info.callback.__name__): info  # type: ignore[union-attr]
        for info in app.registered_commands
    }
    lazy.order = list(lazy.pending)
    lazy.typer_app = app
    lazy.pending_defaults = {}
    return lazy


class LazySubcommandGroup(TyperGroup):
    """A group whose subcommands are built on first lookup (see ``_lazy_group``)."""

    pending: dict[str, Any]  # name -> typer CommandInfo, not built yet
    order: list[str]  # every subcommand's name, in the order they were registered
    typer_app: typer.Typer
    pending_defaults: dict[str, Any]  # the config files' option defaults (_apply_defaults)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.order)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        info = self.pending.pop(cmd_name, None)
        if info is not None:
            from flowcli.cli.conventions import shape_subcommand

            command = typer.main.get_command_from_info(
                info,
                pretty_exceptions_short=self.typer_app.pretty_exceptions_short,
                rich_markup_mode=self.typer_app.rich_markup_mode,
            )
            shape_subcommand(command)
            _apply_defaults(command, self.pending_defaults)
            self.commands[cmd_name] = command
        return super().get_command(ctx, cmd_name)


class LazyCommandGroup(FlowcliGroup):
    """The root group: lists commands from COMMANDS, builds one only when it is used.

    It is also the edge of the program: it serves shell completion, reads the config
    files before any option is parsed (their values become Click's ``default_map``, so a
    flag and an environment variable still win), and folds Click's usage errors into one
    ``Error:`` line.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from flowcli.cli.completion import root_params
        from flowcli.cli.conventions import shape_command

        self.params.extend(root_params())
        shape_command(self, root=True)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            command = build_command(cmd_name, COMMANDS[cmd_name])
            config = ctx.find_root().meta.get("flowcli.config") if ctx is not None else None
            if config is not None:
                _apply_defaults(command, config.option_defaults())
            self.commands[cmd_name] = command
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, spec.help) for name, spec in COMMANDS.items()])

    def shell_complete(self, ctx: Any, incomplete: str) -> list[Any]:
        # Command names come from the table: completing `flowcli s` builds no command.
        from typer._click.shell_completion import CompletionItem

        items = [
            CompletionItem(name, help=spec.help)
            for name, spec in COMMANDS.items()
            if name.startswith(incomplete)
        ]
        if incomplete.startswith("-"):
            for param in self.get_params(ctx):
                for opt in (*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ())):
                    if opt.startswith(incomplete) and param.param_type_name == "option":
                        items.append(CompletionItem(opt, help=getattr(param, "help", None)))
        return items

    def make_context(
        self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any
    ) -> Any:
        if parent is None:
            from flowcli.config import load

            config = load()
            _apply_defaults(self, config.option_defaults(), recurse=False)
            meta = dict(extra.pop("meta", None) or {})
            ctx = super().make_context(info_name, args, parent=parent, **extra)
            ctx.meta.update(meta)
            ctx.meta["flowcli.config"] = config
            return ctx
        return super().make_context(info_name, args, parent=parent, **extra)

    def main(  # type: ignore[override]
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        from typer._click import exceptions as cexc

        from flowcli.cli.completion import COMPLETE_VAR, prepare
        from flowcli.errors import FlowcliError

        if os.environ.get(complete_var or COMPLETE_VAR):
            prepare()
        try:
            code = super().main(
                args=args,
                prog_name=prog_name,
                complete_var=complete_var or COMPLETE_VAR,
                standalone_mode=False,
                **extra,
            )
        except cexc.NoArgsIsHelpError as exc:
            typer.echo(exc.format_message())
            code = 0
        except cexc.UsageError as exc:
            from flowcli.cli.conventions import one_line_usage_error

            print_error(one_line_usage_error(exc))
            code = exc.exit_code
        except cexc.ClickException as exc:
            print_error(exc.format_message())
            code = exc.exit_code
        except typer.Abort:
            print_error("aborted")
            code = 1
        except FlowcliError as exc:  # raised while reading the config files (or --debug)
            if "--debug" in (args if args is not None else sys.argv):
                raise
            print_error(exc.message)
            code = exc.exit_code
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


def _apply_defaults(command: Any, defaults: dict[str, Any], *, recurse: bool = True) -> None:
    """The config files' values become the defaults of the options they name, so Click
    still ranks a flag and the option's environment variable above them."""
    if not defaults:
        return
    if isinstance(command, LazySubcommandGroup):
        command.pending_defaults = defaults  # for the subcommands it builds later
    for param in command.params:
        if param.param_type_name == "option" and param.name in defaults:
            param.default = defaults[param.name]
    if recurse:
        for sub in (getattr(command, "commands", None) or {}).values():
            _apply_defaults(sub, defaults)
