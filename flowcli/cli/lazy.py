"""Commands loaded on demand: `flowcli logs 1` builds the `logs` group and nothing else.

Typer normally builds every command of the app (reading each function's signature) on
each invocation; with ~40 commands that is most of `flowcli --help`'s start-up. The root
group here knows each command's module and one-line help, lists them from that table,
and imports and builds only the command that runs. A test holds the table's help lines
equal to the commands' own.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import typer

from flowcli.cli.boundary import FlowcliGroup


@dataclass(frozen=True)
class LazyCommand:
    module: str
    attr: str  # a typer.Typer (a group) or a command function
    help: str  # the line shown in `flowcli --help`


COMMANDS: dict[str, LazyCommand] = {
    "db": LazyCommand(
        "flowcli.cli.db",
        "app",
        "Create, migrate and inspect the database schema.",
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
    "tui": LazyCommand(
        "flowcli.cli.tui",
        "tui",
        "A live, keyboard-first session debugger: logs, transcript, explain, breakpoints, "
        "step, run, fork and diff (needs `pip install 'flowcli[tui]'`; `?` lists the keys).",
    ),
}


def build_command(name: str, spec: LazyCommand) -> Any:
    obj = getattr(importlib.import_module(spec.module), spec.attr)
    if isinstance(obj, typer.Typer):
        command = typer.main.get_command(obj)
    else:
        single = typer.Typer()
        single.command(name)(obj)
        command = typer.main.get_command(single)
    command.name = name
    return command


class LazyCommandGroup(FlowcliGroup):
    """The root group: lists commands from COMMANDS, builds one only when it is used."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            self.commands[cmd_name] = build_command(cmd_name, COMMANDS[cmd_name])
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, spec.help) for name, spec in COMMANDS.items()])
