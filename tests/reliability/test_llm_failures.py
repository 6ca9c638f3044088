"""A failing LLM: every failure ends in retries, then a clean failed step with its reason
or a success, and no write transaction is held while flowcli waits for the model."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.llm_server import Behaviour, FakeLLM
from tests.reliability.kill import (
    consistency_problems,
    create_session,
    flowcli,
    import_flow,
    loop_flow,
    read_logs,
    session_state,
    spawn,
)
from tests.waiting import wait_until


class TimedLLM(FakeLLM):
    """The fake server, noting when each request arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[float] = []
        # flowcli hanging up on a slow or dripping answer is the point, not a server error.
        self._server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]

    def _next(self) -> Behaviour:
        self.arrivals.append(time.monotonic())
        return super()._next()


@pytest.fixture(scope="module")
def llm_server() -> Iterator[TimedLLM]:
    server = TimedLLM().start()
    yield server
    server.stop()


@pytest.fixture
def llm(llm_server: TimedLLM) -> TimedLLM:
    """The module's server with a clean script (stopping a server costs half a second)."""
    llm_server.script.clear()
    llm_server.default = Behaviour()
    llm_server.requests.clear()
    llm_server.arrivals.clear()
    return llm_server


def _args(base_url: str, *, timeout: float = 5, llm_retries: int = 1, retries: int = 0) -> list:
    return [
        "--responder",
        "openai",
        "--llm-base-url",
        base_url,
        "--llm-model",
        "m",
        "--llm-timeout",
        str(timeout),
        "--llm-retries",
        str(llm_retries),
        "--retries",
        str(retries),
        "--retry-backoff",
        "0.01",
    ]


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens here now: connection refused


@pytest.fixture
def session(tmp_path: Path) -> tuple[Path, int]:
    db = tmp_path / "llm.db"
    return db, create_session(db, import_flow(db, loop_flow(1)))


FAILURES = {
    "http-500": (Behaviour(kind="status", status=500), "HTTP 500"),
    "http-429": (Behaviour(kind="status", status=429), "HTTP 429"),
    "timeout": (Behaviour(kind="slow", delay=60), "timed out"),
    "malformed-json": (Behaviour(kind="malformed"), "malformed response"),
    "slow-drip": (Behaviour(kind="drip", delay=0.05), "took longer than"),  # ~15 s in all
    "connection-closed": (Behaviour(kind="close"), "LLM request failed"),
}
# --llm-timeout: far below the slow and dripping servers' 60 s and 15 s, and far above
# what a good answer takes even on a busy machine (a 0.3 s timeout failed good answers
# there, so the test failed for the wrong reason).
TIMEOUT = 3.0


@pytest.mark.parametrize("name", list(FAILURES))
def test_a_failure_that_passes_is_retried_to_success(
    session: tuple[Path, int], llm: TimedLLM, name: str
) -> None:
    db, sid = session
    behaviour, reason = FAILURES[name]
    llm.then(behaviour)  # the first request fails, the step's retry succeeds
    args = _args(llm.base_url, timeout=TIMEOUT, llm_retries=0, retries=1)
    result = flowcli(db, "run-next", str(sid), *args, "--json")
    assert result.exit_code == 0, result.stderr
    assert len(llm.requests) == 2
    rows = read_logs(db, sid)
    assert [r["status"] for r in rows] == ["failed", "completed"]
    assert [r["attempt_count"] for r in rows] == [1, 2]
    assert reason in rows[0]["error_message"]
    assert consistency_problems(db, sid, 1) == []


def _assert_clean_failure(result: Any, db: Path, sid: int, reason: str, attempts: int) -> None:
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and reason in lines[0], lines
    rows = read_logs(db, sid)
    # Every attempt is a failed log row, counted; no row is left running, no lease held.
    assert [r["status"] for r in rows] == ["failed"] * attempts
    assert [r["attempt_count"] for r in rows] == list(range(1, attempts + 1))
    assert all(reason in r["error_message"] for r in rows)
    row = session_state(db, sid)
    assert row["status"] == "failed" and reason in row["error_reason"]
    # Each failed attempt is an execution logged: the count leaves MRC's next number free.
    assert row["lease_owner"] is None and row["executed_steps_count"] == attempts


@pytest.mark.parametrize("name", list(FAILURES))
def test_a_failure_that_persists_ends_in_a_clean_failed_step(
    session: tuple[Path, int], llm: TimedLLM, name: str
) -> None:
    db, sid = session
    behaviour, reason = FAILURES[name]
    llm.default = behaviour
    started = time.monotonic()
    result = flowcli(
        db, "run-next", str(sid), *_args(llm.base_url, timeout=TIMEOUT, llm_retries=0, retries=1)
    )
    _assert_clean_failure(result, db, sid, reason, attempts=2)
    assert len(llm.requests) == 2  # one HTTP call per attempt, 1 + --retries attempts
    assert time.monotonic() - started < 120  # a slow or dripping server cannot hold it for good
    # After fixing the cause, resume and the failed step runs again, counted on.
    llm.default = Behaviour()
    assert flowcli(db, "session", "resume", str(sid)).exit_code == 0
    ran = flowcli(db, "run-next", str(sid), *_args(llm.base_url))
    assert ran.exit_code == 0, ran.stderr
    rows = read_logs(db, sid)
    assert [r["status"] for r in rows] == ["failed", "failed", "completed"]
    assert rows[-1]["attempt_count"] == 3


def test_http_retries_inside_one_attempt(session: tuple[Path, int], llm: TimedLLM) -> None:
    # --llm-retries: 5xx answers are retried within the call; the step logs one attempt.
    db, sid = session
    llm.then(Behaviour(kind="status", status=502), Behaviour(kind="status", status=500))
    result = flowcli(db, "run-next", str(sid), *_args(llm.base_url, llm_retries=2, retries=0))
    assert result.exit_code == 0, result.stderr
    assert len(llm.requests) == 3
    assert [r["status"] for r in read_logs(db, sid)] == ["completed"]
    llm.default = Behaviour(kind="status", status=500)
    result = flowcli(db, "run-next", str(sid), *_args(llm.base_url, llm_retries=1, retries=0))
    assert result.exit_code == 1 and "HTTP 500" in result.stderr
    assert len(llm.requests) == 5
    assert [r["status"] for r in read_logs(db, sid)] == ["completed", "failed"]


def test_connection_refused_ends_in_a_clean_failed_step(session: tuple[Path, int]) -> None:
    db, sid = session
    result = flowcli(db, "run-next", str(sid), *_args(_closed_port_url(), retries=1))
    _assert_clean_failure(result, db, sid, "cannot connect to LLM", attempts=2)


def test_http_400_is_permanent_and_not_retried(session: tuple[Path, int], llm: TimedLLM) -> None:
    db, sid = session
    llm.default = Behaviour(kind="status", status=400)
    result = flowcli(db, "run-next", str(sid), *_args(llm.base_url, llm_retries=2, retries=2))
    _assert_clean_failure(result, db, sid, "HTTP 400", attempts=1)
    assert len(llm.requests) == 1


def test_retry_after_is_honoured(session: tuple[Path, int], llm: TimedLLM) -> None:
    db, sid = session
    llm.then(Behaviour(kind="status", status=429, headers={"Retry-After": "1.5"}))
    result = flowcli(db, "run-next", str(sid), *_args(llm.base_url))
    assert result.exit_code == 0, result.stderr
    waited = llm.arrivals[1] - llm.arrivals[0]
    # The header said 1.5 s; the backoff alone would have been 0.01 s.
    assert 1.4 <= waited < 5, waited


def _wait_for_claim(db: Path, sid: int, proc: subprocess.Popen) -> None:
    claimed = wait_until(
        lambda: bool(session_state(db, sid)["lease_owner"]),
        "the step's claim",
        proc=proc,
        stop_if_exited=True,
    )
    assert claimed, "the step was never claimed"


@pytest.mark.parametrize(
    "waiting",
    [
        [Behaviour(kind="slow", delay=2)],
        [Behaviour(kind="status", status=429, headers={"Retry-After": "2"})],
    ],
    ids=["slow-answer", "retry-after-sleep"],
)
def test_no_write_lock_is_held_while_waiting_for_the_llm(
    tmp_path: Path, llm: TimedLLM, waiting: list[Behaviour]
) -> None:
    db = tmp_path / "wait.db"
    flow_id = import_flow(db, loop_flow(2))
    waiting_sid = create_session(db, flow_id)
    other_sid = create_session(db, flow_id)
    llm.then(*waiting)
    proc = spawn(db, "run-next", str(waiting_sid), *_args(llm.base_url, timeout=10))
    _wait_for_claim(db, waiting_sid, proc)
    wait_until(lambda: bool(llm.requests), "the LLM request", proc=proc)
    # While it waits, other processes write: they would time out at 0.2 s on a held lock.
    for args in (
        ["session", "create", "--flow", str(flow_id)],
        ["run-next", str(other_sid)],
        ["role", "add", "Observer", "--prompt", "I watch."],
    ):
        result = flowcli(db, "--busy-timeout", "0.2", *args)
        assert result.exit_code == 0, (args, result.stderr)
    con = sqlite3.connect(db, timeout=0.2, isolation_level=None)
    con.execute("BEGIN IMMEDIATE")  # the raw write lock is free too
    con.rollback()
    con.close()
    # The same session, though, is claimed: a second driver is told so, in one line.
    busy = flowcli(db, "--busy-timeout", "0.2", "run-next", str(waiting_sid))
    assert busy.exit_code == 1 and "is busy" in busy.stderr
    assert busy.stderr.count("\n") == 1
    assert proc.poll() is None, "the LLM call should still be in flight"
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert [r["status"] for r in read_logs(db, waiting_sid)] == ["completed"]
    assert consistency_problems(db, waiting_sid, 2) == []
