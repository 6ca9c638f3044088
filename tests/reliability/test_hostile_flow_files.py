"""Hostile flow files (issue 14): YAML alias bombs and their relatives.

A YAML alias repeats a value without repeating its text. A 655-byte "billion laughs" under
``context_param`` used to pass `flow validate` and then make `flow import` write 28 MB/s
until killed; one 500 KB prompt aliased by 2,002 roles imported into a 1 GB database.
Each file here goes through both `flow validate` and `flow import`: they must agree (same
exit code), fail fast with one `Error:` line, and leave no flow and no bulk in the database.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import cpu_seconds, run_sql
from tests.reliability.kill import flowcli
from tests.reliability.test_hostile_input import assert_clean

HEAD = "name: hostile\nroles: {A: {prompt: You are A.}}\nsteps:\n"
STEP = "  - speaker_role_ref: A\n    task_type: comment\n"


def billion_laughs() -> str:
    lines = [
        "    context_param:",
        '      a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
    ]
    lines += [f"      a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    return HEAD + STEP + "\n".join(lines) + "\n"


def nested_mappings() -> str:
    lines = ["    context_param:", "      m0: &m0 {a: lol, b: lol, c: lol, d: lol, e: lol, f: lol}"]
    for i in range(1, 10):
        keys = ", ".join(f"k{j}: *m{i - 1}" for j in range(9))
        lines.append(f"      m{i}: &m{i} {{{keys}}}")
    return HEAD + STEP + "\n".join(lines) + "\n"


def merge_keys() -> str:
    lines = ["    context_param:", "      m0: &m0 {a: [lol, lol, lol, lol, lol, lol, lol, lol]}"]
    for i in range(1, 9):
        keys = ", ".join(f"k{j}: *m{i - 1}" for j in range(9))
        lines.append(f"      m{i}: &m{i} {{<<: *m{i - 1}, {keys}}}")
    return HEAD + STEP + "\n".join(lines) + "\n"


def aliased_prompt() -> str:
    prompt = "x" * 500_000
    roles = [f"  R0: {{prompt: &p {prompt}}}"] + [f"  R{i}: {{prompt: *p}}" for i in range(1, 2002)]
    return (
        "name: prompts\nroles:\n"
        + "\n".join(roles)
        + "\nsteps:\n  - {speaker_role_ref: R0, task_type: comment}\n"
    )


def recursive_alias() -> str:
    return HEAD + STEP + "    context_param: &loop {n: 1, again: [*loop]}\n"


def long_text_aliased_twice() -> str:
    text = "y" * 5_000
    return (
        f"name: twice\nroles:\n  A: {{prompt: &p {text}}}\n  B: {{prompt: *p}}\n"
        "steps:\n  - {speaker_role_ref: A, task_type: comment}\n"
    )


def many_values() -> str:
    return HEAD + STEP + "    context_param: {n: 1, x: [" + ",".join(["1"] * 150_000) + "]}\n"


def deeply_nested() -> str:
    return HEAD + STEP + "    context_param: {n: " + "[" * 5_000 + "]" * 5_000 + "}\n"


def unknown_key_in_context_param() -> str:
    return HEAD + STEP + "    context_param: {n: 2, note: remember me}\n"


def unknown_key_deep_inside() -> str:
    return (
        HEAD
        + STEP
        + "    logic_config:\n      next_step_order: 1\n      max_loops: 1\n"
        + "      exit_condition: {type: expression, expr: 'round > 1', extra: 1}\n"
    )


def huge_integer() -> str:
    return HEAD + STEP + "    context_param: {n: " + "9" * 5_000 + "}\n"


def duplicate_keys() -> str:
    return HEAD + STEP + "    task_type: summarize\n"


def short_prompt_shared_by_aliases() -> str:
    """Valid: aliases of short values are what anchors are for."""
    roles = ["  R0: {prompt: &p You are a careful reviewer.}"]
    roles += [f"  R{i}: {{prompt: *p}}" for i in range(1, 50)]
    return (
        "name: shared\nroles:\n"
        + "\n".join(roles)
        + "\nsteps:\n  - {speaker_role_ref: R0, task_type: comment}\n"
    )


def plain_valid_flow() -> str:
    return HEAD + STEP + "    context_param: {n: 3}\n    context_scope: last_n_messages\n"


FILES: dict[str, tuple[Callable[[], str], str | None]] = {
    # name: (builder, expected text of the error, or None when the flow is valid)
    "billion-laughs-under-context_param": (billion_laughs, "aliases (*name) written out"),
    "nested-mapping-laughs": (nested_mappings, "aliases (*name) written out"),
    "merge-key-laughs": (merge_keys, "aliases (*name) written out"),
    "500KB-prompt-aliased-by-2002-roles": (aliased_prompt, "repeats a text of 500,000"),
    "recursive-alias": (recursive_alias, "contains it"),
    "5KB-text-aliased-twice": (long_text_aliased_twice, "repeats a text of 5,000"),
    "150000-values": (many_values, "more than 100,000 values"),
    "deeply-nested": (deeply_nested, "nested too deeply"),
    "unknown-key-in-context_param": (unknown_key_in_context_param, "unknown key 'note'"),
    "unknown-key-deep-inside": (unknown_key_deep_inside, "unknown key 'extra'"),
    "huge-integer": (huge_integer, "invalid value"),
    "duplicate-key": (duplicate_keys, "duplicate key"),
    "short-prompt-shared-by-aliases": (short_prompt_shared_by_aliases, None),
    "plain-valid-flow": (plain_valid_flow, None),
}
BOUND = 60.0  # CPU seconds for both commands: loose; an alias bomb takes hours or all memory


@pytest.mark.parametrize("name", list(FILES))
def test_validate_and_import_agree_on_hostile_files(tmp_path: Path, name: str) -> None:
    build, expected = FILES[name]
    path = tmp_path / f"{name}.yaml"
    path.write_text(build(), encoding="utf-8")
    db = tmp_path / "flows.db"
    started = cpu_seconds()
    validated = flowcli(db, "flow", "validate", str(path))
    imported = flowcli(db, "flow", "import", str(path))
    assert cpu_seconds() - started < BOUND
    assert validated.exit_code == imported.exit_code, (validated.output, imported.output)
    for result in (validated, imported):
        assert_clean(result)
    if expected is None:
        assert validated.exit_code == 0
        assert len(run_sql(db, "SELECT id FROM flow_templates")) == 1
        return
    assert validated.exit_code == 1
    for result in (validated, imported):
        errors = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(errors) == 1, result.stderr
        assert expected in errors[0], errors[0]
    assert not db.exists()  # an invalid file leaves no database behind, let alone a bulky one
