"""The `--where` selector: its grammar and limits, and SQL that only ever narrows.

The property at the heart of it: for random sessions and random expressions, the
selection computed with SQL (plus the sandbox for what SQL cannot answer) equals the
selection computed by the sandbox alone over every session, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert

from flowcli.db.connection import Database, resolve_target
from flowcli.db.schema import require_schema
from flowcli.db.tables import (
    flow_steps_table,
    flow_templates_table,
    sessions_table,
    step_logs_table,
)
from flowcli.engine.selector import (
    SELECTOR_FIELDS,
    compile_selector,
    parse_duration,
)
from flowcli.errors import ExpressionError

NOW = datetime(2026, 6, 1, 12, 0, 0)
SNAPSHOT = json.dumps({"name": "Demo", "steps": [{"id": 1, "order": 1}, {"id": 2, "order": 2}]})


# --------------------------------------------------------------------------- databases
def _prepare(db: Database) -> Database:
    require_schema(db)
    with db.write() as conn:
        conn.execute(
            insert(flow_templates_table),
            [
                {"id": 1, "name": "Demo", "type": "other"},
                {"id": 2, "name": "de_mo%", "type": "other"},
            ],
        )
        conn.execute(
            insert(flow_steps_table),
            [
                {
                    "id": i,
                    "flow_template_id": 1,
                    "order": i,
                    "speaker_role_ref": "A",
                    "task_type": "ask_question",
                    "context_scope": "none",
                }
                for i in (1, 2)
            ],
        )
    return db


@pytest.fixture(scope="module")
def sqlite_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    path = tmp_path_factory.mktemp("selector") / "selector.db"
    db = _prepare(Database(resolve_target(str(path))))
    yield db
    db.dispose()


@pytest.fixture(scope="module")
def postgres_db(pg_database: str) -> Iterator[Database]:
    import psycopg
    from sqlalchemy.engine import make_url

    schema = f"sel_{uuid.uuid4().hex[:10]}"
    u = make_url(pg_database)
    args = dict(host=u.host, port=u.port or 5432, user=u.username, dbname=u.database)
    with psycopg.connect(**args, autocommit=True) as con:
        con.execute(f'CREATE SCHEMA "{schema}"')
    url = u.update_query_dict({"options": f"-csearch_path={schema}"})
    db = _prepare(Database(resolve_target(url.render_as_string(hide_password=False))))
    yield db
    db.dispose()
    with psycopg.connect(**args, autocommit=True) as con:
        con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def load(db: Database, sessions: list[dict[str, Any]]) -> None:
    """Replace every session (and its log rows) with ``sessions``."""
    with db.write() as conn:
        conn.execute(delete(step_logs_table))
        conn.execute(delete(sessions_table))
        for sid, session in enumerate(sessions, start=1):
            logs = session.pop("logs", [])
            conn.execute(insert(sessions_table).values(id=sid, **session))
            for order, log in enumerate(logs, start=1):
                conn.execute(
                    insert(step_logs_table).values(
                        session_id=sid, step_id=1, execution_order=order, **log
                    )
                )


# --------------------------------------------------------------------------- strategies
def texts(nul: bool) -> st.SearchStrategy[str]:
    alphabet = "aAtT imeout%_/\\'\"é🙂-:0" + ("\x00" if nul else "")
    return st.one_of(
        st.sampled_from(["timeout", "LLM timeout after 60s", "", "a", "Timeout", "100%", "x_y"]),
        st.text(alphabet=alphabet, max_size=10),
    )


def moments() -> st.SearchStrategy[datetime | None]:
    return st.one_of(
        st.none(),
        st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2027, 1, 1)),
        st.sampled_from([datetime(2026, 5, 25, 12, 0, 0), datetime(2025, 1, 1)]),
    )


def sessions(nul: bool) -> st.SearchStrategy[list[dict[str, Any]]]:
    log = st.fixed_dictionaries(
        {
            "status": st.sampled_from(["completed", "failed", "timeout", "skipped", "running"]),
            "result_type": st.sampled_from([None, "error", "success", "timeout"]),
            "error_message": st.one_of(st.none(), texts(nul)),
        }
    )
    session = st.fixed_dictionaries(
        {
            "topic": texts(nul),
            "flow_template_id": st.sampled_from([1, 2]),
            "status": st.sampled_from(
                [None, "", "running", "failed", "finished", "paused", "not_started"]
                + ["cancelled", "terminated", "Failed", "fail%"]
            ),
            "error_reason": st.one_of(st.none(), texts(nul)),
            "created_at": moments(),
            "updated_at": moments(),
            "ended_at": moments(),
            "executed_steps_count": st.one_of(st.none(), st.integers(-3, 12)),
            "current_round": st.one_of(st.none(), st.integers(-2, 5)),
            "current_step_id": st.sampled_from([None, 1, 2, 99]),
            "flow_snapshot": st.sampled_from([None, SNAPSHOT, "{not json"]),
            "variables": st.one_of(
                st.none(),
                st.just("[1]"),
                st.fixed_dictionaries(
                    {}, optional={"tier": st.sampled_from(["gold", "silver"]), "n": st.integers()}
                ).map(json.dumps),
            ),
            "logs": st.lists(log, max_size=3),
        }
    )
    return st.lists(session, max_size=7)


KINDS = {name: spec.kind for name, spec in SELECTOR_FIELDS.items()}
SQL_FIELDS = [n for n, k in KINDS.items() if k in ("int", "text", "time")]
LITERALS = {
    "int": [0, 1, 2, -1, 12, 1.5, True, None, "1", 2**40],
    "text": ["failed", "running", "not_started", "", "Demo", "de_mo%", "timeout", "a", None, 1],
    "time": ["2025", "2026-05-25 12:00:00.000000", "2026-01-01", "", "z", None, 0],
}
UNTRANSLATABLE = [
    "len(topic) > 2",
    "vars.get('tier') == 'gold'",
    "vars.n > 1",
    "step == 1",
    "step is None",
    "topic.startswith('a')",
    "status.upper() == 'FAILED'",
    "(round or 0) + 1 > 2",
    "status == flow",
    "[status] == ['failed']",
]


@st.composite
def leaves(draw: st.DrawFn) -> str:
    field = draw(st.sampled_from(SQL_FIELDS))
    kind = KINDS[field]
    pool = LITERALS[kind] + [v for k, vals in LITERALS.items() if k != kind for v in vals[:2]]
    value = repr(draw(st.sampled_from(pool)))
    shape = draw(st.integers(0, 10))
    if shape <= 3:
        op = draw(st.sampled_from(["==", "!=", "<", "<=", ">", ">="]))
        return f"{field} {op} {value}" if shape % 2 else f"{value} {op} {field}"
    if shape == 4:
        needle = repr(draw(st.sampled_from(["timeout", "", "%", "_", "a", "T", "é", 1])))
        return f"{needle} {draw(st.sampled_from(['in', 'not in']))} {field}"
    if shape == 5:
        items = draw(st.lists(st.sampled_from(pool), max_size=3))
        return f"{field} {draw(st.sampled_from(['in', 'not in']))} {items!r}"
    if shape == 6:
        return f"{field} in {draw(st.sampled_from(['failed running', 'Demo', '']))!r}"
    if shape == 7:
        return f"{field} {draw(st.sampled_from(['is', 'is not']))} None"
    if shape == 8:
        return field if draw(st.booleans()) else repr(draw(st.sampled_from([True, 0, "x", None])))
    if shape == 9:
        time_field = draw(st.sampled_from(["created_at", "updated_at", "ended_at"]))
        days = draw(st.sampled_from([0, 7, 400]))
        return f"{time_field} {draw(st.sampled_from(['<', '>=']))} ago('{days}d')"
    return draw(st.sampled_from(UNTRANSLATABLE))


def expressions() -> st.SearchStrategy[str]:
    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.lists(inner, min_size=2, max_size=3).map(lambda p: "(" + " and ".join(p) + ")"),
            st.lists(inner, min_size=2, max_size=3).map(lambda p: "(" + " or ".join(p) + ")"),
            inner.map(lambda p: f"(not {p})"),
            st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
            st.just("0 <= round < 3"),
        )

    return st.recursive(leaves(), extend, max_leaves=6)


def agree(db: Database, rows: list[dict[str, Any]], source: str) -> None:
    load(db, rows)
    selector = compile_selector(source, now=NOW)
    with db.read() as conn:
        reference = selector.ids(conn, sandbox_only=True)
        assert selector.ids(conn) == reference, (source, selector.evaluated_in(conn.dialect.name))
        assert selector.count(conn) == len(reference), source


AGREEMENT = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@AGREEMENT
@given(rows=sessions(nul=True), source=expressions())
def test_sql_and_sandbox_agree_on_sqlite(sqlite_db: Database, rows: Any, source: str) -> None:
    agree(sqlite_db, rows, source)


@pytest.mark.postgres
@settings(AGREEMENT, max_examples=80)
@given(rows=sessions(nul=False), source=expressions())
def test_sql_and_sandbox_agree_on_postgres(postgres_db: Database, rows: Any, source: str) -> None:
    agree(postgres_db, rows, source)


# --------------------------------------------------------------------------- fixed cases
def _rows() -> list[dict[str, Any]]:
    return [
        {  # 1
            "topic": "fractions",
            "flow_template_id": 1,
            "status": "failed",
            "error_reason": "step 2 failed",
            "created_at": datetime(2026, 5, 1),
            "ended_at": datetime(2026, 5, 2),
            "current_step_id": 2,
            "flow_snapshot": SNAPSHOT,
            "variables": json.dumps({"tier": "gold"}),
            "logs": [
                {"status": "completed", "result_type": "success"},
                {"status": "failed", "result_type": "error", "error_message": "LLM timeout"},
            ],
        },
        {  # 2
            "topic": "decimals",
            "flow_template_id": 1,
            "status": "failed",
            "created_at": datetime(2026, 5, 30),
            "logs": [{"status": "failed", "result_type": "error", "error_message": "no table"}],
        },
        {  # 3
            "topic": "percent",
            "flow_template_id": 2,
            "status": "running",
            "created_at": datetime(2026, 5, 31),
            "current_round": 1,
            "current_step_id": 1,
            "flow_snapshot": SNAPSHOT,
        },
        {"topic": "MRC", "flow_template_id": 1, "status": None},  # 4
        {
            "topic": "old",
            "flow_template_id": 1,
            "status": "terminated",  # 5
            "ended_at": datetime(2025, 1, 1),
        },
    ]


@pytest.mark.parametrize(
    ("source", "expected", "evaluated"),
    [
        ("status == 'failed' and 'timeout' in last_error", [1], "sql"),
        ("flow == 'Demo' and ended_at < ago('7d')", [1, 5], "sql"),
        ("status == 'not_started'", [4], "sql"),
        ("status in ['cancelled', 'terminated']", [5], "sql"),
        ("last_error_type == 'error'", [1, 2], "sql"),
        ("flow_id == 2 or topic == 'MRC'", [3, 4], "sql"),
        ("created_at >= ago('3d')", [2, 3], "sql"),
        ("ended_at is None", [2, 3, 4], "sql"),
        ("not (ended_at < '2026')", [1], "sql"),  # None < '2026' raises: not selected
        ("'%' in topic or 'cent' in topic", [3], "sql"),
        ("step == 2", [1], "sandbox"),
        ("vars.get('tier') == 'gold'", [1], "sandbox"),
        ("vars.tier == 'gold'", [1], "sandbox"),  # a missing key fails: not selected
        ("status == 'failed' and len(error_reason or '') > 3", [1], "sql+sandbox"),
        ("round == 1 and step == 1", [3], "sql+sandbox"),
    ],
)
def test_fields_and_where_they_are_evaluated(
    sqlite_db: Database, source: str, expected: list[int], evaluated: str
) -> None:
    load(sqlite_db, _rows())
    selector = compile_selector(source, now=NOW)
    with sqlite_db.read() as conn:
        assert selector.ids(conn) == expected
        assert selector.evaluated_in("sqlite") == evaluated
        assert selector.count(conn) == len(expected)
        assert selector.ids(conn, limit=1) == expected[:1]
        assert [selector.matches(conn, sid) for sid in (1, 2, 3, 4, 5)] == [
            sid in expected for sid in (1, 2, 3, 4, 5)
        ]


def test_sql_part_uses_the_status_index(sqlite_db: Database) -> None:
    from sqlalchemy import func, select

    selector = compile_selector("status == 'failed' and 'timeout' in last_error", now=NOW)
    stmt = select(func.count()).select_from(sessions_table).where(selector.plan("sqlite").clause)
    with sqlite_db.read() as conn:
        compiled = stmt.compile(conn, compile_kwargs={"literal_binds": True})
        plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}").fetchall()
    assert any("ix_sessions_status" in str(row) for row in plan), plan


# --------------------------------------------------------------------------- grammar
@pytest.mark.parametrize(
    ("duration", "seconds"),
    [("7d", 7 * 86400), ("90m", 5400), ("1d 12h", 129600), ("2w", 1209600), ("0s", 0)],
)
def test_durations(duration: str, seconds: int) -> None:
    assert parse_duration(duration).total_seconds() == seconds


def test_ago_counts_back_from_the_selectors_moment() -> None:
    selector = compile_selector("ended_at < ago('1d 1h')", now=NOW)
    assert "'2026-05-31 11:00:00.000000'" in selector.expression.source
    # replaced where it is called, across lines and after wide characters; not in text
    selector = compile_selector(
        "topic == 'é🙂 ago(1d)' and (\n  ended_at < ago('1d')\n  or created_at > ago( '2h' ))",
        now=NOW,
    )
    assert selector.expression.source == (
        "topic == 'é🙂 ago(1d)' and (\n  ended_at < '2026-05-31 12:00:00.000000'\n"
        "  or created_at > '2026-06-01 10:00:00.000000')"
    )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("stauts == 'failed'", "unknown name 'stauts' (known names: created_at, ended_at"),
        ("status = 'failed'", "invalid syntax"),
        ("ago(7)", "ago() takes one duration in quotes, such as ago('7d')"),
        ("ended_at < ago(topic)", "ago() takes one duration in quotes"),
        ("ended_at < ago('7 days')", "give a duration such as '7d'"),
        ("ended_at < ago('9999999d')", "give a duration such as '7d'"),
        ("ended_at < ago('999999w')", "at most 36,600 days"),
        ("ago", "unknown name 'ago'"),
        ("status.__class__", "not allowed"),
        ("[x for x in topic for y in topic for z in topic for w in topic]", "at most 3 'for'"),
        ("lambda: 1", "lambda is not allowed"),
        ("messages", "unknown name 'messages'"),
        ("not " * 60 + "1", "nested too deeply"),
        ("1 or " * 3000 + "1", "too long"),
        ("", "expression is empty"),
    ],
)
def test_the_sandbox_refuses_what_it_refuses_in_flows(source: str, message: str) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_selector(source)
    assert message in info.value.message
    assert "\n" not in info.value.message


def test_a_row_that_exceeds_the_sandbox_budget_is_not_selected(sqlite_db: Database) -> None:
    rows = _rows()
    rows[0]["topic"] = "x" * 3000
    load(sqlite_db, rows)
    # 3000 ** 2 iterations is past the sandbox's loop limit on row 1, cheap on the others
    selector = compile_selector("len([1 for a in topic for b in topic]) > 0", now=NOW)
    with sqlite_db.read() as conn:
        assert selector.ids(conn) == [2, 3, 4, 5]


def test_the_sandbox_part_has_a_deadline_for_the_whole_selection(sqlite_db: Database) -> None:
    load(sqlite_db, [{"topic": f"t{i}", "flow_template_id": 1} for i in range(300)])
    selector = compile_selector("len(topic) > 1", now=NOW, deadline_s=0.0)
    with sqlite_db.read() as conn, pytest.raises(ExpressionError) as info:
        selector.count(conn)
    assert "the sandbox part ran past 0 s after 256 sessions" in info.value.message
    # the SQL part has none: it is one statement
    assert compile_selector("topic != 'x'", deadline_s=0.0).count  # compiles
    with sqlite_db.read() as conn:
        assert compile_selector("topic != 'x'", deadline_s=0.0).count(conn) == 300


def test_field_table_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "batch.md").read_text()
    for name in SELECTOR_FIELDS:
        assert f"`{name}`" in doc, name
