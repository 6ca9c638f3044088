"""``flowcli role …``: the roles that speak in flows."""

from typing import Annotated

import typer

from flowcli.cli.context import open_db
from flowcli.cli.options import JsonOption

app = typer.Typer(help="Add, list and show roles.", no_args_is_help=True)


@app.command()
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The role's unique name.", show_default=False)],
    prompt: Annotated[
        str, typer.Option("--prompt", help="The role's system prompt.", show_default=False)
    ],
    update: Annotated[
        bool, typer.Option("--update", help="Change the prompt of an existing role.")
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """Add a role (or, with --update, change its prompt)."""
    from flowcli.flows.store import add_role
    from flowcli.render.json_output import print_json

    role = add_role(open_db(ctx, create=True), name, prompt, update_existing=update)
    if json_out:
        print_json(role)
    else:
        typer.echo(role["id"])


@app.command("list")
def list_(ctx: typer.Context, json_out: JsonOption = False) -> None:
    """List roles."""
    from flowcli.flows.store import list_roles
    from flowcli.render.flows import role_table
    from flowcli.render.json_output import print_json

    roles = list_roles(open_db(ctx))
    if json_out:
        print_json(roles)
    else:
        role_table(roles)


@app.command()
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Role name (or id).", show_default=False)],
    json_out: JsonOption = False,
) -> None:
    """Show one role and its prompt."""
    from flowcli.flows.store import get_role
    from flowcli.render.flows import role_panel
    from flowcli.render.json_output import print_json

    role = get_role(open_db(ctx), name)
    if json_out:
        print_json(role)
    else:
        role_panel(role)
