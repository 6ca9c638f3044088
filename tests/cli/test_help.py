"""Every command and option explains itself: the test walks the whole app, lazy groups
included, and fails on a command or option without help text."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import typer

from flowcli.cli.app import app


def _walk(cmd: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, cmd
    if hasattr(cmd, "list_commands"):
        ctx = typer.Context(cmd)
        for name in cmd.list_commands(ctx):
            yield from _walk(cmd.get_command(ctx, name), (*path, name))


def test_every_command_and_option_has_help() -> None:
    root = typer.main.get_command(app)
    missing = []
    for path, cmd in _walk(root):
        if getattr(cmd, "hidden", False):
            continue
        if not (cmd.help or getattr(cmd, "short_help", None)):
            missing.append(" ".join(path) or "flowcli")
        for param in cmd.params:
            if param.param_type_name == "option" and not getattr(param, "help", None):
                missing.append(f"{' '.join(path)} {param.opts[0]}")
            if param.param_type_name == "argument" and not getattr(param, "help", None):
                missing.append(f"{' '.join(path)} <{param.name}>")
    assert missing == []


def test_help_runs_for_every_command(runner) -> None:
    root = typer.main.get_command(app)
    for path, cmd in _walk(root):
        if getattr(cmd, "hidden", False):
            continue
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage" in result.stdout


def test_root_help_lines_match_the_commands() -> None:
    """`flowcli --help` lists commands from a table (they load on demand); it must say
    what each command's own help says."""
    from flowcli.cli.lazy import COMMANDS, build_command

    for name, spec in COMMANDS.items():
        command = build_command(name, spec)
        first_paragraph = " ".join((command.help or "").strip().split("\n\n")[0].split())
        assert spec.help == first_paragraph, name


def test_root_help_lists_every_command(runner) -> None:
    from flowcli.cli.lazy import COMMANDS

    out = runner.invoke(app, ["--help"]).stdout
    for name in COMMANDS:
        assert f"  {name} " in out


def test_a_group_builds_only_the_subcommand_that_runs() -> None:
    """`flowcli session show 1` converts `show` from its function, not the whole group."""
    from flowcli.cli.lazy import COMMANDS, build_command

    group = build_command("session", COMMANDS["session"])
    ctx = typer.Context(group)
    names = group.list_commands(ctx)
    assert "show" in names and "create" in names
    assert group.commands == {}
    show = group.get_command(ctx, "show")
    assert show is not None and show.name == "show"
    assert list(group.commands) == ["show"]
    assert group.get_command(ctx, "show") is show  # built once
    assert group.list_commands(ctx) == names  # the order the group registered them
    assert group.get_command(ctx, "no-such-command") is None
