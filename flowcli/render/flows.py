"""Flows and roles: ``flow list``, ``flow show`` (the steps as a tree), ``role list|show``."""

from __future__ import annotations

from typing import Any

from flowcli.render.formatting import escaped, panel
from flowcli.render.output import out_console
from flowcli.render.tables import Col, show_table

FLOW_COLUMNS = [
    Col("id", "right"),
    Col("name", flex=True, min_width=14, max_width=40),
    Col("type", priority=2),
    Col("version", priority=3),
    Col("steps", "right", priority=1),
    Col("active", priority=4),
    Col("topic", flex=True, min_width=16, priority=2),
]


def flow_table(flows: list[dict[str, Any]]) -> None:
    rows = [
        [
            str(f["id"]),
            escaped(f["name"]),
            escaped(f["type"]),
            escaped(f.get("version")),
            str(f["step_count"]),
            "yes" if f.get("is_active") is not False else "no",
            escaped(f.get("topic") or ""),
        ]
        for f in flows
    ]
    show_table(FLOW_COLUMNS, rows, title="flows", empty="no flows yet (flowcli flow import FILE)")


def flow_tree(flow: dict[str, Any]) -> None:
    from rich.tree import Tree

    from flowcli.flows.snapshot import step_from_dict

    term = flow.get("termination_config") or {}
    title = f"[bold]{escaped(flow['name'])}[/bold] (flow {flow['id']}, {escaped(flow['type'])}"
    title += f", version {escaped(flow.get('version'))})" if flow.get("version") else ")"
    tree = Tree(title)
    if flow.get("topic"):
        tree.add(f"topic: {escaped(flow['topic'])}")
    tree.add(
        f"rounds: {term.get('max_rounds', 1)}, max steps: {term.get('max_steps', 1000)}"
        + (f", ends when: {escaped(term['end_condition'])}" if term.get("end_condition") else "")
    )
    if flow.get("responder"):
        tree.add(f"responder: {escaped(flow['responder'].get('type'))}")
    steps_node = tree.add("steps")
    for raw in flow["steps"]:
        step = step_from_dict(raw)
        label = f"[bold]{step.order}.[/bold] {escaped(step.speaker)}"
        if step.target:
            label += f" → {escaped(step.target)}"
        label += f"  [cyan]{escaped(step.task_type)}[/cyan]  context: {escaped(step.context_scope)}"
        node = steps_node.add(label)
        if step.description:
            node.add(f"[dim]{escaped(step.description)}[/dim]")
        if step.condition:
            node.add(f"[yellow]if[/yellow] {escaped(step.condition)} (skipped when false)")
        if step.loop is not None:
            node.add(
                f"[magenta]↺ loop[/magenta] back to step {step.loop.to_order}, "
                f"at most {step.loop.max_loops} time(s) "
                f"(body runs {step.loop.max_loops + 1}×)"
            )
            if step.exit_condition:
                kind = step.exit_condition.get("type")
                expr = step.exit_condition.get("expr")
                node.add(f"[magenta]exit loop[/magenta] when {escaped(expr if expr else kind)}")
        for w in step.warnings:
            node.add(f"[red]! {escaped(w)}[/red]")
    out_console().print(tree)


def role_table(roles: list[dict[str, Any]]) -> None:
    columns = [
        Col("id", "right"),
        Col("name", flex=True, min_width=12, max_width=30),
        Col("prompt", flex=True, min_width=20, max_width=80, priority=1),
    ]
    rows = [
        [str(r["id"]), escaped(r["name"]), escaped(" ".join(str(r["prompt"]).split()))]
        for r in roles
    ]
    show_table(columns, rows, title="roles", empty="no roles yet (flowcli role add NAME)")


def role_panel(role: dict[str, Any]) -> None:
    out_console().print(
        panel(escaped(role["prompt"]), title=f"role {role['id']}: {escaped(role['name'])}")
    )
