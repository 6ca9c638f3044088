"""A flow drawn as a graph: Mermaid or Graphviz DOT text, from plain step data."""

from __future__ import annotations

from typing import Any

from flowcli.flows.snapshot import step_from_dict


def _quote(text: str) -> str:
    return text.replace('"', "'")


def flow_graph(flow: dict[str, Any], fmt: str = "mermaid") -> str:
    steps = [step_from_dict(s) for s in flow["steps"]]
    edges: list[tuple[str, str, str]] = []
    for i, step in enumerate(steps):
        node = f"s{step.order}"
        if step.next_step_id is not None:
            target = next((s for s in steps if s.id == step.next_step_id), None)
            if target is not None:
                edges.append((node, f"s{target.order}", "next"))
        elif i + 1 < len(steps):
            edges.append((node, f"s{steps[i + 1].order}", ""))
        else:
            edges.append((node, "done", ""))
        if step.loop is not None:
            edges.append((node, f"s{step.loop.to_order}", f"loop ≤{step.loop.max_loops}"))
    labels = {}
    for step in steps:
        label = f"{step.order}. {step.speaker}"
        if step.target:
            label += f" → {step.target}"
        label += f"\\n{step.task_type}"
        if step.condition:
            label += f"\\nif {step.condition}"
        labels[f"s{step.order}"] = _quote(label)
    if fmt == "dot":
        lines = [f'digraph "{_quote(str(flow.get("name", "flow")))}" {{', "  rankdir=TB;"]
        for node, label in labels.items():
            lines.append(f'  {node} [shape=box, label="{label}"];')
        lines.append('  done [shape=doublecircle, label="end"];')
        for a, b, text in edges:
            style = ", style=dashed" if text.startswith("loop") else ""
            lines.append(f'  {a} -> {b} [label="{text}"{style}];')
        lines.append("}")
        return "\n".join(lines)
    lines = ["flowchart TD"]
    for node, label in labels.items():
        lines.append(f'  {node}["{label.replace(chr(92) + "n", "<br/>")}"]')
    lines.append("  done([end])")
    for a, b, text in edges:
        arrow = "-.->" if text.startswith("loop") else "-->"
        lines.append(f"  {a} {arrow}|{text}| {b}" if text else f"  {a} {arrow} {b}")
    return "\n".join(lines)
