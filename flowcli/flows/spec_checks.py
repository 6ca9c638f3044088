"""Checks across a whole flow document, which no single field can make: step orders and
jumps, role references, loops, and context settings. Each problem is (where, what)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from flowcli.flows.spec_words import did_you_mean, show_value
from flowcli.flows.vocabulary import CONTEXT_KEYWORDS, ROLE_REF_MAX, Loc, Problem


def _count(value: Any, minimum: int) -> int | None:
    """``value`` if it is a real integer >= minimum (others were reported by the model)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        return None
    return value


def check_document(
    data: dict[Any, Any], known_roles: Collection[str], defaulted: set[int]
) -> list[Problem]:
    """Orders, loop targets and role references: the checks no single field can make.

    Runs on the normalised raw data, so it still reports when other fields are invalid.
    """
    problems: list[Problem] = []
    raw_steps = data.get("steps")
    steps = [
        (index, step)
        for index, step in enumerate(raw_steps if isinstance(raw_steps, list) else [])
        if isinstance(step, dict)
    ]
    total = len(raw_steps) if isinstance(raw_steps, list) else 0

    # Orders: unique and exactly 1..n once defaults are applied.
    orders: dict[int, int] = {}
    holder: dict[int, int] = {}
    for index, step in steps:
        order = _count(step.get("order"), 1)
        if order is None:
            continue
        orders[index] = order
        if order in holder:
            other = holder[order]
            why = " (it has no order, so its position counts)" if other in defaulted else ""
            problems.append(
                (
                    ("steps", index, "order"),
                    f"duplicate order {order}: steps[{other}] has it too{why}",
                )
            )
        else:
            holder[order] = index
        if order > total:
            problems.append(
                (
                    ("steps", index, "order"),
                    f"{order} is out of range: orders run 1..{total} without gaps, one per step",
                )
            )

    # Loops: the target must exist and lie at or before the loop step; loops must nest.
    valid = set(orders.values())
    span = (
        f"1..{total}"
        if valid == set(range(1, total + 1))
        else ", ".join(str(o) for o in sorted(valid)) or "none"
    )
    loops: list[tuple[int, int, int]] = []  # (first order, loop step order, index)
    for index, step in steps:
        logic = step.get("logic_config")
        if not isinstance(logic, dict):
            continue
        target = _count(logic.get("next_step_order"), 1)
        if target is None:
            continue
        where: Loc = ("steps", index, "logic_config", "next_step_order")
        own = orders.get(index)
        if target not in valid:
            problems.append((where, f"{target} is not a step order ({span})"))
        elif own is not None and target > own:
            problems.append(
                (
                    where,
                    f"{target} points forward (this step's order is {own}); "
                    "a loop jumps back to this step or an earlier one",
                )
            )
        elif own is not None:
            loops.append((target, own, index))
    loops.sort()
    for first, (start_a, end_a, index_a) in enumerate(loops):
        for start_b, end_b, index_b in loops[first + 1 :]:
            if start_a < start_b <= end_a < end_b:
                problems.append(
                    (
                        ("steps", index_b, "logic_config", "next_step_order"),
                        f"this loop (orders {start_b}..{end_b}) crosses the loop of "
                        f"steps[{index_a}] (orders {start_a}..{end_a}); loops must nest "
                        "or be separate",
                    )
                )

    # Role references: speakers and targets need a role; scopes may name any of them.
    roles = data.get("roles")
    defined = (
        {name for name in roles if isinstance(name, str)} if isinstance(roles, dict) else set()
    )
    defined |= set(known_roles)
    referable = set(defined)
    for _, step in steps:
        for key in ("speaker_role_ref", "target_role_ref"):
            ref = step.get(key)
            if isinstance(ref, str) and ref:
                referable.add(ref)
    for index, step in steps:
        for key in ("speaker_role_ref", "target_role_ref"):
            ref = step.get(key)
            if isinstance(ref, str) and ref and len(ref) <= ROLE_REF_MAX and ref not in defined:
                problems.append(
                    (
                        ("steps", index, key),
                        f"unknown role {show_value(ref)}: it is neither defined under roles "
                        f"nor an existing role{did_you_mean(ref, defined)}",
                    )
                )
        scope = step.get("context_scope", "all")
        if isinstance(scope, str) and scope:
            if scope not in CONTEXT_KEYWORDS and scope not in referable:
                problems.append(
                    (
                        ("steps", index, "context_scope"),
                        f"{show_value(scope)} is neither a context scope "
                        f"({', '.join(CONTEXT_KEYWORDS)}) nor a role of this flow"
                        f"{did_you_mean(scope, (*CONTEXT_KEYWORDS, *referable))}",
                    )
                )
        elif isinstance(scope, list):
            for item_index, item in enumerate(scope):
                if not isinstance(item, str) or not item:
                    continue
                where = ("steps", index, "context_scope", item_index)
                # A list holds role names; a keyword there is a mistake unless a role
                # really has that name.
                if item in CONTEXT_KEYWORDS and item not in referable:
                    problems.append(
                        (
                            where,
                            f"{item!r} is a context keyword; a list holds role names only "
                            f"(use {item!r} on its own)",
                        )
                    )
                elif item not in referable:
                    problems.append(
                        (
                            where,
                            f"unknown role {show_value(item)}: not a role of this flow"
                            f"{did_you_mean(item, referable)}",
                        )
                    )
    return problems
