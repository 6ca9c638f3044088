"""``flowcli flow …``: import, validate, list, show, export and graph flows."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flowcli.cli.options import JsonOption
from flowcli.cli.params import int_limit

if TYPE_CHECKING:
    from flowcli.flows.spec import FlowDocument
from flowcli.cli.context import existing_db, open_db
from flowcli.errors import EXIT_FAILURE

app = typer.Typer(help="Define flows in YAML/JSON files and store them.", no_args_is_help=True)

FileArg = Annotated[
    Path, typer.Argument(help="A flow file (.yaml, .yml or .json).", show_default=False)
]
FlowIdArg = Annotated[
    int,
    typer.Argument(help="The flow's id.", min=1, max=int_limit("count"), show_default=False),
]


def _load(ctx: typer.Context, file: Path) -> "FlowDocument":
    from flowcli.flows.spec import load_flow_file
    from flowcli.flows.store import known_role_names

    # Validating needs no database (without one, no roles exist yet), and an invalid
    # file must not leave a new database behind.
    db = existing_db(ctx)
    return load_flow_file(file, known_roles=known_role_names(db) if db is not None else ())


def _load_or_report(ctx: typer.Context, file: Path, json_out: bool) -> "FlowDocument":
    """Load FILE; when it is invalid, print every problem (one line each) and exit 1."""
    from flowcli.errors import FlowValidationError

    try:
        return _load(ctx, file)
    except FlowValidationError as exc:
        from flowcli.cli.boundary import print_error

        if json_out:
            from flowcli.render.formatting import plural
            from flowcli.render.json_output import print_json

            print_json({"valid": False, "file": str(file), "problems": exc.problems})
            # stdout holds the document; stderr still ends in the one line every failure has.
            print_error(f"{file}: invalid flow ({plural(len(exc.problems), 'problem')})")
        else:
            for problem in exc.problems:
                print_error(problem)
        raise typer.Exit(EXIT_FAILURE) from None


@app.command("import")
def import_(
    ctx: typer.Context,
    file: FileArg,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Rewrite the newest flow of that name in place instead of adding a new version.",
        ),
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """Validate FILE and store it as a flow; prints the new flow's id."""
    from flowcli.flows.store import import_flow
    from flowcli.render.json_output import print_json
    from flowcli.render.messages import info

    doc = _load_or_report(ctx, file, json_out)
    result = import_flow(open_db(ctx, create=True), doc, replace=replace)
    if json_out:
        print_json(result)
        return
    typer.echo(result.id)
    from flowcli.render.formatting import plural

    how = "replaced" if result.replaced else "imported"
    info(
        f"{how} flow {result.name!r} as id {result.id} (version {result.version}, "
        f"{plural(result.steps, 'step')})"
    )


@app.command()
def validate(ctx: typer.Context, file: FileArg, json_out: JsonOption = False) -> None:
    """Check FILE strictly; exit 0 when valid, 1 with every problem listed when not."""
    from flowcli.render.formatting import plural
    from flowcli.render.json_output import print_json
    from flowcli.render.safe_text import one_line

    doc = _load_or_report(ctx, file, json_out)
    if json_out:
        print_json(
            {
                "valid": True,
                "file": str(file),
                "name": doc.name,
                "steps": len(doc.steps),
            }
        )
    else:
        typer.echo(f"{one_line(file)}: valid ({plural(len(doc.steps), 'step')})")


@app.command("list")
def list_(ctx: typer.Context, json_out: JsonOption = False) -> None:
    """List stored flows."""
    from flowcli.flows.store import list_flows
    from flowcli.render.flows import flow_table
    from flowcli.render.json_output import print_json

    flows = list_flows(open_db(ctx))
    if json_out:
        print_json(flows)
    else:
        flow_table(flows)


@app.command()
def show(ctx: typer.Context, flow_id: FlowIdArg, json_out: JsonOption = False) -> None:
    """Show a flow's steps as a tree, with loops and conditions drawn."""
    from flowcli.flows.snapshot import step_from_dict
    from flowcli.flows.store import get_flow
    from flowcli.render.flows import flow_tree
    from flowcli.render.json_output import print_json
    from flowcli.render.messages import warn

    flow = get_flow(open_db(ctx), flow_id)
    warnings = [
        f"step {s['order']}: {w}" for s in flow["steps"] for w in step_from_dict(s).warnings
    ]
    if json_out:
        print_json({**flow, "warnings": warnings})
        return
    flow_tree(flow)
    for w in warnings:
        warn(w)


@app.command()
def export(
    ctx: typer.Context,
    flow_id: FlowIdArg,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Export JSON instead of YAML.")] = False,
) -> None:
    """Export a flow as a file that validates and imports again."""
    from flowcli.flows.spec import dump_flow_yaml
    from flowcli.flows.store import export_flow
    from flowcli.render.json_output import to_json

    data = export_flow(open_db(ctx), flow_id)
    text = to_json(data) + "\n" if json_out else dump_flow_yaml(data)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")


@app.command()
def graph(
    ctx: typer.Context,
    flow_id: FlowIdArg,
    fmt: Annotated[str, typer.Option("--format", "-f", help="mermaid or dot.")] = "mermaid",
) -> None:
    """Print the flow as a Mermaid or Graphviz DOT graph."""
    from flowcli.errors import UsageError
    from flowcli.flows.graph import flow_graph
    from flowcli.flows.store import get_flow

    if fmt not in ("mermaid", "dot"):
        raise UsageError(f"--format must be mermaid or dot, not {fmt!r}")
    typer.echo(flow_graph(get_flow(open_db(ctx), flow_id), fmt))
