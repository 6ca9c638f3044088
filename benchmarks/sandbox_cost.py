"""The sandbox's price and its limits: ordinary work against unguarded baselines, bombs
against the time they take to be refused.

    python benchmarks/sandbox_cost.py                # 20,000 renders/evaluations, best of 5
    python benchmarks/sandbox_cost.py --number 2000 --repeat 1   # quick

Ordinary work, as µs per call and a ratio against a baseline measured in this run:
flowcli's template responder rendering its default template against Jinja's own
ImmutableSandboxedEnvironment rendering the same text (no work budget, no guards), and a
typical condition against Python's ``eval`` of the same compiled code (no sandbox at all).
Bombs (issue 14): how long each takes to end in its error, statically (validation) and
when handed an already-built shared value (the work budget, and the CPU deadline).
"""

from __future__ import annotations

import argparse
import sys
import time
import timeit
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jinja2.sandbox import ImmutableSandboxedEnvironment  # noqa: E402

from flowcli.engine.responders import DEFAULT_TEMPLATE  # noqa: E402
from flowcli.errors import ExpressionError  # noqa: E402
from flowcli.sandbox import limits  # noqa: E402
from flowcli.sandbox.expressions import compile_expression  # noqa: E402
from flowcli.sandbox.names import MessageView  # noqa: E402
from flowcli.sandbox.templates import compile_template  # noqa: E402

CONDITION = "round >= 2 and 'agree' in last.content and loop_iteration < 3"
NAMES: dict[str, Any] = {
    "speaker": "Teacher",
    "target": "Student",
    "task_type": "ask_question",
    "topic": "Fractions",
    "round": 2,
    "step": 3,
    "loop_iteration": 1,
    "last": MessageView(1, "Student", "Teacher", "I agree with that", None, 2),
}


def per_call(function: Any, number: int, repeat: int) -> float:
    return min(timeit.repeat(function, number=number, repeat=repeat)) / number * 1e6


def shared(levels: int) -> tuple[Any, ...]:
    value: tuple[Any, ...] = (0, 0)
    for _ in range(levels - 1):
        value = (value, value)
    return value


def nested_comprehension(levels: int) -> str:
    source = "[0]"
    for level in range(levels):
        source = f"[(v{level}, v{level}) for v{level} in {source}]"
    return source


def time_to_refusal(run: Any) -> tuple[float, str]:
    started = time.perf_counter()
    try:
        run()
    except ExpressionError as exc:
        return time.perf_counter() - started, exc.message.rsplit(": ", 1)[-1]
    return time.perf_counter() - started, "NOT REFUSED"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--number", type=int, default=20_000, help="calls per measurement")
    parser.add_argument("--repeat", type=int, default=5, help="measurements (best is kept)")
    args = parser.parse_args()

    template = compile_template(DEFAULT_TEMPLATE)
    plain = ImmutableSandboxedEnvironment().from_string(DEFAULT_TEMPLATE)
    condition = compile_expression(CONDITION)
    code = compile(CONDITION, "<condition>", "eval")
    rows = [
        (
            "template render",
            per_call(lambda: template.render(NAMES), args.number, args.repeat),
            per_call(lambda: plain.render(NAMES), args.number, args.repeat),
            "Jinja's own sandbox",
        ),
        (
            "condition",
            per_call(lambda: condition.evaluate(NAMES), args.number, args.repeat),
            per_call(lambda: eval(code, {"__builtins__": {}}, NAMES), args.number, args.repeat),
            "Python eval (no sandbox)",
        ),
    ]
    print(f"ordinary work: µs per call, best of {args.repeat} × {args.number:,}")
    for name, ours, base, label in rows:
        print(f"  {name:<16} flowcli {ours:8.1f}   {label} {base:8.1f}   ratio {ours / base:5.2f}")

    values = {"vars": {"t": shared(40), "u": shared(40)}}
    chain = "{% set a0 = [1] %}" + "".join(
        f"{{% set a{n + 1} = [a{n}, a{n}] %}}" for n in range(40)
    )
    bombs = [
        (
            "2**40 leaves hashed (validation)",
            lambda: compile_expression(f"vars.get({nested_comprehension(40)}[0])"),
        ),
        ("2**40 leaves in a template (validation)", lambda: compile_template(chain)),
        (
            "2**40 leaves hashed (work budget)",
            lambda: compile_expression("vars.get(vars.t)").evaluate(values),
        ),
        (
            "2**40 leaves compared (work budget)",
            lambda: compile_expression("vars.t == vars.u").evaluate(values),
        ),
        (
            "1e12 loop iterations (CPU deadline)",
            _deadline_bomb,
        ),
    ]
    print("bombs: seconds until refused")
    for name, run in bombs:
        seconds, reason = time_to_refusal(run)
        print(f"  {name:<40} {seconds:8.3f}   {reason}")
    return 0


def _deadline_bomb() -> None:
    """Count limits lifted, so only the CPU deadline can stop 10**12 iterations."""
    saved = limits.MAX_ITERATIONS, limits.MAX_WORK
    limits.MAX_ITERATIONS, limits.MAX_WORK = 10**13, 10**16
    try:
        source = "len([1 for a in 'x' * 10000 for b in 'x' * 10000 for c in 'x' * 10000])"
        compile_expression(source).evaluate({})
    finally:
        limits.MAX_ITERATIONS, limits.MAX_WORK = saved


if __name__ == "__main__":
    sys.exit(main())
