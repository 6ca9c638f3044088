"""`flow`, `role` and `session` commands: import, export round trip, lifecycle, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, Cli
from tests.flows_fixtures import LOOP_FLOW
from tests.helpers import ROLES, import_flow, logs, new_session, session_row, write_flow

BACKENDS = ("sqlite", "postgres")


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_imports_and_runs(cli: Cli, example: Path) -> None:
    flow_id = cli.json("flow", "import", str(example))["id"]
    # briefing.yaml is the debugging walk-through's flow: it needs vars.audience.
    extra = ["--var", "audience=team"] if example.name == "briefing.yaml" else []
    sid = cli.json("session", "create", "--flow", str(flow_id), *extra)["id"]
    summary = cli.json("auto", str(sid))
    assert summary["final_status"] == "finished"


def test_the_debugging_example_fails_once_without_its_variable(cli: Cli) -> None:
    flow_id = cli.json("flow", "import", str(EXAMPLES / "briefing.yaml"))["id"]
    sid = cli.json("session", "create", "--flow", str(flow_id))["id"]
    failed = cli("auto", str(sid), "--json")
    assert failed.exit_code == 1
    assert json.loads(failed.stdout)["session"]["current_step_id"] is not None
    assert "audience" in failed.stderr
    done = cli.json("logs", str(sid), "--status", "completed", "--last", "1")[0]
    fork = cli.json("session", "fork", str(sid), "--at", str(done["id"]), "--set", "audience=team")
    assert cli.json("auto", str(fork["id"]))["final_status"] == "finished"


def test_import_prints_id_and_validate_exit_codes(cli: Cli, tmp_path: Path) -> None:
    good = write_flow(tmp_path, LOOP_FLOW)
    assert cli.ok("flow", "validate", str(good)).stdout.strip().endswith("valid (3 steps)")
    assert cli.ok("flow", "import", str(good)).stdout.strip() == "1"
    bad = write_flow(
        tmp_path, LOOP_FLOW.replace("speaker_role_ref: C", "speeker_role_ref: C"), "bad.yaml"
    )
    result = cli("flow", "validate", str(bad))
    assert result.exit_code == 1
    assert "speeker_role_ref" in result.stderr and "bad.yaml" in result.stderr
    data = json.loads(cli("flow", "validate", str(bad), "--json").stdout)
    assert data["valid"] is False and data["problems"]


def test_failed_import_writes_nothing(cli: Cli, tmp_path: Path) -> None:
    cli.ok("db", "upgrade")
    bad = write_flow(tmp_path, LOOP_FLOW.replace("max_loops: 3", "max_loops: many"))
    result = cli("flow", "import", str(bad))
    assert result.exit_code == 1 and result.stderr.startswith("Error: ")
    counts = [
        cli.sql(f"SELECT count(*) AS n FROM {t}")[0]["n"]
        for t in ("flow_templates", "flow_steps", "roles")
    ]
    assert counts == [0, 0, 0]


def test_export_validates_and_imports_again(cli: Cli, tmp_path: Path) -> None:
    for example in sorted(EXAMPLES.glob("*.yaml")):
        flow_id = cli.json("flow", "import", str(example))["id"]
        exported = cli.ok("flow", "export", str(flow_id)).stdout
        path = tmp_path / f"exported-{flow_id}.yaml"
        path.write_text(exported)
        cli.ok("flow", "validate", str(path))
        again = cli.json("flow", "import", str(path))["id"]
        assert cli.ok("flow", "export", str(again)).stdout.replace(
            "version: '2'", "version: '1'"
        ) == exported.replace("version: '2'", "version: '1'")


def test_reimport_makes_a_new_version_unless_replace(cli: Cli) -> None:
    first = import_flow(cli, LOOP_FLOW)
    second = import_flow(cli, LOOP_FLOW + "\n")
    assert second != first
    flows = cli.json("flow", "list")
    assert [f["version"] for f in flows] == ["1", "2"]
    replaced = import_flow(cli, LOOP_FLOW + "\n\n", "--replace")
    assert replaced == second
    assert len(cli.json("flow", "list")) == 2


def test_flow_show_tree_and_graphs(cli: Cli) -> None:
    flow_id = import_flow(cli, LOOP_FLOW)
    tree = cli.ok("flow", "show", str(flow_id)).stdout
    assert "↺ loop back to step 1, at most 3 time(s)" in tree
    assert cli.json("flow", "show", str(flow_id))["steps"][1]["logic_config"]["max_loops"] == 3
    mermaid = cli.ok("flow", "graph", str(flow_id)).stdout
    assert mermaid.startswith("flowchart TD") and "s2 -.->|loop ≤3| s1" in mermaid
    dot = cli.ok("flow", "graph", str(flow_id), "--format", "dot").stdout
    assert dot.startswith("digraph") and "s2 -> s1" in dot
    assert cli("flow", "graph", str(flow_id), "--format", "png").exit_code == 2


def test_flow_show_warns_on_mrc_unbounded_loop(cli: Cli) -> None:
    flow_id = import_flow(cli, LOOP_FLOW)
    cli.sql(
        """UPDATE flow_steps SET logic_config = '{"next_step_order": 1}'
                   WHERE flow_template_id = :f AND "order" = 2""",
        f=flow_id,
    )
    result = cli.ok("flow", "show", str(flow_id))
    assert "next_step_order without max_loops is ignored" in result.stderr


def test_roles(cli: Cli) -> None:
    assert cli.ok("role", "add", "Judge", "--prompt", "You judge.").stdout.strip() == "1"
    assert cli("role", "add", "Judge", "--prompt", "again").exit_code == 1
    cli.ok("role", "add", "Judge", "--prompt", "You judge fairly.", "--update")
    assert cli.json("role", "show", "Judge")["prompt"] == "You judge fairly."
    assert [r["name"] for r in cli.json("role", "list")] == ["Judge"]
    assert "You judge fairly." in cli.ok("role", "show", "Judge").stdout
    missing = cli("role", "show", "Nobody")
    assert (
        missing.exit_code == 1 and missing.stderr.strip() == "Error: role 'Nobody' does not exist"
    )


def test_session_create_with_roles_vars_topic(cli: Cli) -> None:
    cli.ok("role", "add", "Expert", "--prompt", "You are an expert.")
    flow_id = import_flow(cli, LOOP_FLOW)
    sid = cli.json(
        "session",
        "create",
        "--flow",
        str(flow_id),
        "--topic",
        "Tides",
        "--role",
        "B=Expert",
        "--var",
        "n=3",
        "--var",
        "who=Ann",
        "--var",
        'cfg={"a": [1, 2]}',
    )["id"]
    data = cli.json("session", "show", str(sid))
    assert data["topic"] == "Tides" and data["status"] == "not_started"
    assert data["variables"] == {"n": 3, "who": "Ann", "cfg": {"a": [1, 2]}}
    assert {r["role_ref"]: r["name"] for r in data["roles"]}["B"] == "Expert"
    row = session_row(cli.db, sid)
    assert json.loads(row["roles_snapshot"])["B"]["prompt"] == "You are an expert."
    assert len(json.loads(row["flow_snapshot"])["steps"]) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--flow", "99999"], "Error: flow 99999 does not exist"),
        (["--flow", "1", "--role", "Z=A"], "the flow has no role ref 'Z'"),
        (["--flow", "1", "--role", "B=Nobody"], "role 'Nobody' (for 'B') does not exist"),
        (["--flow", "1", "--var", "novalue"], "--var 'novalue' is not KEY=VALUE"),
        (["--flow", "1", "--var", "deep=" + "[" * 100000 + "]" * 100000], "--var value is"),
        (["--flow", "1", "--topic", "x" * 2001], "topic is 2001 characters"),
    ],
)
def test_session_create_errors(cli: Cli, args: list[str], message: str) -> None:
    import_flow(cli, LOOP_FLOW)
    result = cli("session", "create", *args)
    assert result.exit_code in (1, 2)
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert cli.json("session", "list") == []


def test_session_list_and_status_filter(cli: Cli) -> None:
    a = new_session(cli, LOOP_FLOW)
    b = new_session(cli, LOOP_FLOW.replace("name: loop", "name: other"))
    cli.ok("session", "start", str(b))
    listed = cli.json("session", "list")
    assert [s["id"] for s in listed] == [b, a]  # newest first
    for key in (
        "id",
        "status",
        "flow_template_id",
        "topic",
        "current_round",
        "executed_steps_count",
    ):
        assert key in listed[0]
    assert [s["id"] for s in cli.json("session", "list", "--status", "running")] == [b]
    assert cli("session", "list", "--status", "bogus").exit_code == 2


@pytest.mark.parametrize(
    ("sequence", "final"),
    [
        (["start", "pause", "resume"], "running"),
        (["start", "cancel"], "cancelled"),
        (["cancel"], "cancelled"),
    ],
)
def test_legal_transitions(cli: Cli, sequence: list[str], final: str) -> None:
    sid = new_session(cli, LOOP_FLOW)
    for action in sequence:
        cli.ok("session", action, str(sid))
    assert session_row(cli.db, sid)["status"] == final


@pytest.mark.parametrize(
    ("setup", "action"),
    [
        ([], "pause"),
        ([], "resume"),
        (["start"], "start"),
        (["cancel"], "resume"),
        (["start", "pause"], "pause"),
        (["cancel"], "start"),
    ],
)
def test_illegal_transitions(cli: Cli, setup: list[str], action: str) -> None:
    sid = new_session(cli, LOOP_FLOW)
    for step in setup:
        cli.ok("session", step, str(sid))
    before = session_row(cli.db, sid)
    result = cli("session", action, str(sid))
    assert result.exit_code == 1 and f"cannot {action} session {sid}" in result.stderr
    assert session_row(cli.db, sid) == before


def test_paused_session_is_not_run(cli: Cli) -> None:
    sid = new_session(cli, LOOP_FLOW)
    cli.ok("run-next", str(sid))
    cli.ok("session", "pause", str(sid))
    result = cli("run-next", str(sid))
    assert result.exit_code == 1 and "paused" in result.stderr
    cli.ok("session", "resume", str(sid))
    cli.ok("run-next", str(sid))


def test_delete_cascades_and_asks_first(cli: Cli) -> None:
    sid = new_session(cli, LOOP_FLOW)
    keep = new_session(cli, LOOP_FLOW.replace("name: loop", "name: keep"))
    cli.ok("auto", str(sid), "--quiet")
    cli.ok("auto", str(keep), "--quiet")
    declined = cli("session", "delete", str(sid), input="n\n")
    assert declined.exit_code != 0
    assert session_row(cli.db, sid)["id"] == sid
    cli.ok("session", "delete", str(sid), "--yes")
    for table in ("step_execution_logs", "messages", "session_roles", "sessions"):
        column = "id" if table == "sessions" else "session_id"
        rows = cli.sql(f"SELECT count(*) AS n FROM {table} WHERE {column} = :sid", sid=sid)
        assert rows[0]["n"] == 0
    assert len(logs(cli.db, keep)) == 9
    assert cli("session", "show", str(sid)).exit_code == 1


CHILD_TABLES = ("step_execution_logs", "messages", "session_roles")


def _child_rows(cli: Cli, sid: int) -> dict[str, list[dict[str, object]]]:
    return {
        table: cli.sql(f"SELECT * FROM {table} WHERE session_id = :sid ORDER BY id", sid=sid)
        for table in CHILD_TABLES
    }


def test_delete_archives_first_and_restore_archive_puts_it_back(cli: Cli, tmp_path: Path) -> None:
    sid = new_session(cli, LOOP_FLOW)
    cli.ok("auto", str(sid), "--quiet")
    before = _child_rows(cli, sid)
    session_before = session_row(cli.db, sid)
    archive = tmp_path / "deleted.jsonl.gz"
    done = cli.json("session", "delete", str(sid), "--yes", "--archive", str(archive))
    assert done["archive"] == str(archive) and archive.is_file()
    assert done["deleted"] == {table: len(rows) for table, rows in before.items()}
    assert cli("session", "show", str(sid)).exit_code == 1
    checked = cli.json("db", "restore-archive", str(archive), "--dry-run")
    assert checked["not_restored"] == 0
    restored = cli.json("db", "restore-archive", str(archive))
    assert restored["restored"] == 1  # its id was free: the same rows, the same ids
    assert _child_rows(cli, sid) == before
    assert session_row(cli.db, sid) == session_before


def test_delete_without_an_archive_warns_and_one_referenced_is_kept(
    cli: Cli, tmp_path: Path
) -> None:
    sid = new_session(cli, LOOP_FLOW)
    cli.ok("run-next", str(sid))
    gone = cli("session", "delete", str(sid), "--yes", "--no-archive")
    assert gone.exit_code == 0 and "without an archive" in gone.stderr
    assert not list(tmp_path.glob("**/*.jsonl.gz"))
    assert cli("session", "show", str(sid)).exit_code == 1
    both = cli("session", "delete", "1", "--yes", "--no-archive", "--archive", str(tmp_path))
    assert both.exit_code == 2 and "not both" in both.stderr
    # A row of another session pointing at this one's: nothing of it is deleted.
    target = new_session(cli, LOOP_FLOW)
    other = new_session(cli, LOOP_FLOW)
    cli.ok("run-next", str(target))
    cli.ok("run-next", str(other))
    [log] = logs(cli.db, target)
    cli.sql(
        "UPDATE step_execution_logs SET parent_log_id = :log WHERE session_id = :other",
        log=log["id"],
        other=other,
    )
    archive = tmp_path / "kept.jsonl.gz"
    kept = cli("session", "delete", str(target), "--yes", "--archive", str(archive))
    assert kept.exit_code == 1
    line = kept.stderr.strip()
    assert line.startswith("Error: ") and f"rows of session {other} point at its rows" in line
    assert str(archive) in line and len(line.splitlines()) == 1
    assert len(logs(cli.db, target)) == 1


def test_delete_works_without_on_delete_cascade(cli: Cli, tmp_path: Path) -> None:
    """A database whose foreign keys predate flowcli (MRC's) has no ON DELETE."""
    sid = new_session(cli, LOOP_FLOW)
    cli.ok("auto", str(sid), "--quiet")
    if cli.backend == "sqlite":
        import sqlite3

        con = sqlite3.connect(cli.db)
        con.execute("PRAGMA foreign_keys = OFF")
        con.execute("PRAGMA writable_schema = ON")
        con.execute(
            "UPDATE sqlite_master SET sql = replace(sql, 'ON DELETE CASCADE', '') "
            "WHERE type = 'table'"
        )
        con.commit()
        con.close()
        ddl = cli.sql("SELECT sql FROM sqlite_master WHERE name = 'step_execution_logs'")
        assert "CASCADE" not in ddl[0]["sql"]
    else:
        # The same foreign keys without ON DELETE, as MRC's schema has them.
        for table, column, parent in (
            ("step_execution_logs", "session_id", "sessions"),
            ("messages", "session_id", "sessions"),
            ("session_roles", "session_id", "sessions"),
            ("messages", "speaker_session_role_id", "session_roles"),
        ):
            name = f"fk_{table}_{column}_{parent}"
            cli.sql(
                f"ALTER TABLE {table} DROP CONSTRAINT {name}, ADD CONSTRAINT {name} "
                f"FOREIGN KEY ({column}) REFERENCES {parent} (id)"
            )
        rules = cli.sql(
            "SELECT delete_rule FROM information_schema.referential_constraints "
            "WHERE constraint_name = 'fk_step_execution_logs_session_id_sessions'"
        )
        assert rules[0]["delete_rule"] == "NO ACTION"
    cli.ok("session", "delete", str(sid), "--yes")
    assert cli.sql("SELECT count(*) AS n FROM step_execution_logs")[0]["n"] == 0
    if cli.backend == "sqlite":
        assert cli.sql("PRAGMA foreign_key_check") == []


@pytest.mark.parametrize(
    "command", [["session", "show"], ["session", "start"], ["session", "delete", "--yes"], ["logs"]]
)
def test_unknown_session_ids(cli: Cli, command: list[str]) -> None:
    cli.ok("db", "upgrade")
    result = cli(*command, "99999")
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: session 99999 does not exist"


def test_unknown_flow_ids(cli: Cli) -> None:
    cli.ok("db", "upgrade")
    for command in (
        ["flow", "show", "4242"],
        ["flow", "export", "4242"],
        ["flow", "graph", "4242"],
    ):
        result = cli(*command)
        assert result.exit_code == 1 and result.stderr.strip() == "Error: flow 4242 does not exist"


def test_read_commands_emit_one_json_document(cli: Cli) -> None:
    sid = new_session(
        cli,
        ROLES
        + """
name: tiny
steps:
  - {speaker_role_ref: A, task_type: comment, context_scope: none}
""",
    )
    for args in (
        ["flow", "list"],
        ["role", "list"],
        ["session", "list"],
        ["session", "show", str(sid)],
        ["flow", "show", "1"],
        ["role", "show", "A"],
    ):
        out = cli.ok(*args, "--json").stdout
        json.loads(out)
