"""MRC's own backend (../shared/mrc, unmodified) served on a database file, as a test client.

The interop tests ask the real application, not a guess of it, whether a database that
flowcli touched still works for MRC. Its virtualenv is built once per machine with
MRC's own ``setup-venv`` (Flask 2.3, SQLAlchemy 1.4) under ``FLOWCLI_MRC_VENV`` (default
``~/.cache/flowcli-tests/mrc-venv``), outside the repository; each server is started with
``serve.py`` on a private copy and stopped with SIGTERM.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
MRC_DIR = REPO_ROOT.parent / "shared" / "mrc"
SERVE = MRC_DIR / "serve.py"
SETUP_VENV = MRC_DIR / "setup-venv"
DEFAULT_VENV = Path.home() / ".cache" / "flowcli-tests" / "mrc-venv"
# Generous: a cold Flask import on a busy 2-core machine.
START_DEADLINE_S = 120.0
REQUEST_TIMEOUT_S = 60.0


class MrcUnavailable(Exception):
    """MRC's backend cannot be run here; the message says why (tests skip with it)."""


def mrc_venv() -> Path:
    """The venv that runs MRC, built once (under a file lock, so parallel runs share it)."""
    if not SERVE.is_file() or not SETUP_VENV.is_file():
        raise MrcUnavailable(f"MRC's backend is not at {MRC_DIR} (../shared is absent)")
    venv = Path(os.environ.get("FLOWCLI_MRC_VENV", DEFAULT_VENV))
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = subprocess.run(
            ["bash", str(SETUP_VENV), str(venv)], capture_output=True, text=True, timeout=900
        )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise MrcUnavailable(f"could not build MRC's venv at {venv}: {' | '.join(tail)}")
    return venv


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# MRC sends every LLM call to this port (hard-coded). serve.py answers there unless the
# port is taken, so every MRC server on a machine shares the first one's stand-in; when
# that server stops (another test run's), the others would meet a refused connection.
MRC_LLM_PORT = 5010
_llm_keeper: Any = None


def ensure_llm_stand_in() -> None:
    """Answer MRC's LLM calls from this process when nothing listens on MRC's LLM port."""
    global _llm_keeper
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", MRC_LLM_PORT)) == 0:
            return
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Reply(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.dumps({"success": True, "data": {"response": "harness reply"}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    try:
        server = ThreadingHTTPServer(("127.0.0.1", MRC_LLM_PORT), Reply)
    except OSError:
        return  # someone bound it meanwhile: they answer
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="mrc-llm", daemon=True).start()
    _llm_keeper = server


class MrcError(AssertionError):
    """MRC answered something other than success where the test needed success."""


class MrcBackend:
    """One MRC server on one database file. Calls return MRC's parsed JSON envelope."""

    def __init__(self, venv: Path, db: Path, workdir: Path, *, step_progress: bool = True):
        self.venv = venv
        self.db = Path(db)
        self.workdir = Path(workdir)
        self.step_progress = step_progress
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MrcBackend:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        cmd = [
            str(self.venv / "bin" / "python"),
            str(SERVE),
            "--db",
            str(self.db),
            "--port",
            str(self.port),
            "--workdir",
            str(self.workdir),
        ]
        if self.step_progress:
            cmd.append("--step-progress")
        log = open(self.workdir / "serve.log", "w")  # noqa: SIM115 (closed in stop())
        self._log = log
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True
        )
        deadline = time.monotonic() + START_DEADLINE_S
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("ready "):
                self._drain_stdout()
                return self
            if not line and self.proc.poll() is not None:
                break
        self.stop()
        raise MrcUnavailable(
            "MRC's backend did not start: " + (self.workdir / "serve.log").read_text()[-800:]
        )

    def _drain_stdout(self) -> None:
        """Keep reading MRC's stdout into a file: MRC prints a debug line per step, and a
        pipe nobody reads fills up and blocks it mid-request (holding its write lock)."""
        import threading

        assert self.proc is not None and self.proc.stdout is not None
        stdout = self.proc.stdout
        out_path = self.workdir / "serve.out"

        def drain() -> None:
            with open(out_path, "a") as out:
                for line in stdout:
                    out.write(line)

        threading.Thread(target=drain, name="mrc-stdout", daemon=True).start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self.proc = None
        log = getattr(self, "_log", None)
        if log is not None:
            log.close()
            self._log = None

    def __enter__(self) -> MrcBackend:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- HTTP ------------------------------------------------------------------------

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        """(HTTP status, MRC's JSON envelope) for one request; never raises on 4xx/5xx."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_S) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        try:
            payload = json.loads(raw or b"{}")
        except ValueError:
            payload = {"success": False, "message": raw[:500].decode("utf-8", "replace")}
        return status, payload if isinstance(payload, dict) else {"data": payload}

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        """The ``data`` of a successful call; anything else fails the test with MRC's words."""
        status, payload = self.call(method, path, body)
        if status >= 400 or not payload.get("success", False):
            raise MrcError(f"MRC {method} {path} -> {status}: {payload.get('message')!r}")
        return payload.get("data")

    # --- the calls the interop tests use ------------------------------------------------

    def create_session(self, flow_id: int, topic: str, roles: dict[str, int] | None = None) -> int:
        body: dict[str, Any] = {"topic": topic, "flow_template_id": flow_id}
        if roles:
            body["role_mappings"] = roles
        return int(self.ok("POST", "/api/sessions", body)["id"])

    def control(self, session_id: int, action: str) -> Any:
        return self.ok("POST", f"/api/sessions/{session_id}/control", {"action": action})

    def run_next(self, session_id: int) -> Any:
        ensure_llm_stand_in()
        return self.ok("POST", f"/api/sessions/{session_id}/run-next-step", {})

    def session(self, session_id: int) -> Any:
        return self.ok("GET", f"/api/sessions/{session_id}")

    def messages(self, session_id: int) -> Any:
        return self.ok("GET", f"/api/sessions/{session_id}/messages")

    def export(self, session_id: int) -> Any:
        return self.ok("GET", f"/api/sessions/{session_id}/export?format=json")

    def list_sessions(self) -> Any:
        return self.ok("GET", "/api/sessions?page_size=100")

    def run_to_end(self, session_id: int, limit: int = 200) -> int:
        """Run MRC's steps until the session is no longer running; the steps it ran."""
        for n in range(limit):
            if self.session(session_id).get("status") != "running":
                return n
            self.run_next(session_id)
        raise MrcError(f"session {session_id} still running after {limit} MRC steps")

    def step_logs(self, session_id: int) -> Any:
        """MRC's step-log view (served with --step-progress): ``{"logs": [...], ...}``."""
        return self.ok("GET", f"/api/sessions/{session_id}/step-progress")
