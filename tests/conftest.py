"""Shared fixtures: a CliRunner with a wide terminal and databases built in tmp_path."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from flowcli.cli.app import app

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"
MRC_FIXTURE = SHARED / "fixtures" / "mrc" / "multi_role_chat.db"
EXAMPLES = REPO_ROOT / "examples"

# Rich must not wrap the output the tests compare; TTY_COMPATIBLE makes Rich treat the
# captured stdout as a terminal, so tests see the terminal views (tables, panels) at 200
# columns. Tests of piped output remove it (tests/cli/test_output_fits.py).
WIDE_ENV = {
    "COLUMNS": "200",
    "LINES": "50",
    "TERM": "dumb",
    "NO_COLOR": "1",
    "TTY_COMPATIBLE": "1",
}


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FLOWCLI_DB", raising=False)
    # No developer's own config file or pager leaks into a test.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    for key in ("FLOWCLI_PAGER", "PAGER", "FLOWCLI_WIDTH", "FLOWCLI_BUSY_TIMEOUT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in WIDE_ENV.items():
        monkeypatch.setenv(key, value)
    for key in ("FLOWCLI_LLM_BASE_URL", "FLOWCLI_LLM_MODEL", "FLOWCLI_LLM_API_KEY"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


class Cli:
    """Runs flowcli commands against one database, like a user would.

    ``db`` is a SQLite file (a Path) or, for the PostgreSQL run of a test, a URL (str).
    """

    def __init__(self, runner: CliRunner, db: Path | str) -> None:
        self.runner = runner
        self.db = db

    @property
    def backend(self) -> str:
        return "sqlite" if isinstance(self.db, Path) else "postgres"

    def sql(self, statement: str, **params: Any) -> list[Any]:
        """Run SQL on the test database directly (setting up a state, or reading one)."""
        from tests.helpers import run_sql

        return run_sql(self.db, statement, **params)

    def __call__(self, *args: str, input: str | None = None, db: bool = True) -> Result:
        argv = (["--db", str(self.db)] if db else []) + [str(a) for a in args]
        return self.runner.invoke(app, argv, input=input, env=WIDE_ENV)

    def ok(self, *args: str, input: str | None = None) -> Result:
        result = self(*args, input=input)
        assert result.exit_code == 0, (
            f"flowcli {' '.join(args)} exited {result.exit_code}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}\nexc: {result.exception!r}"
        )
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json").stdout)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "flowcli.db"


# --- PostgreSQL: one throwaway database per test run, one schema per test ------------

PG_URL = os.environ.get("FLOWCLI_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BACKENDS_MARK = "backends"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Modules that set ``BACKENDS = ("sqlite", "postgres")`` run their `cli` tests on both."""
    if "cli" not in metafunc.fixturenames:
        return
    backends = getattr(metafunc.module, "BACKENDS", ("sqlite",))
    if metafunc.definition.get_closest_marker("sqlite_only"):
        backends = ("sqlite",)
    metafunc.parametrize("backend", backends, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "sqlite"))


def _pg_reachable(url: str) -> str | None:
    try:
        import psycopg
        from sqlalchemy.engine import make_url
    except ImportError:
        return "psycopg is not installed (pip install '.[postgres]')"
    u = make_url(url)
    try:
        psycopg.connect(
            host=u.host or "127.0.0.1",
            port=u.port or 5432,
            user=u.username,
            password=u.password,
            dbname=u.database,
            connect_timeout=3,
        ).close()
    except Exception as exc:  # noqa: BLE001 - any failure means: skip with the reason
        return f"PostgreSQL not reachable at {u.render_as_string(hide_password=True)}: {exc}"
    return None


@pytest.fixture(scope="session")
def pg_database() -> Any:
    """A database created for this test run and dropped at its end (URL), or a skip."""
    reason = _pg_reachable(PG_URL)
    if reason:
        pytest.skip(reason)
    import uuid

    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(PG_URL)
    name = f"flowcli_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = dict(
        host=base.host or "127.0.0.1",
        port=base.port or 5432,
        user=base.username,
        password=base.password,
        dbname=base.database,
        autocommit=True,
    )
    with psycopg.connect(**admin) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    yield base.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(**admin) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_database: str) -> Any:
    """A fresh schema in the run's database, as a URL whose search_path selects it."""
    import uuid

    import psycopg
    from sqlalchemy.engine import make_url

    schema = f"t_{uuid.uuid4().hex[:10]}"
    u = make_url(pg_database)
    conn_args = dict(
        host=u.host or "127.0.0.1",
        port=u.port or 5432,
        user=u.username,
        password=u.password,
        dbname=u.database,
        autocommit=True,
    )
    with psycopg.connect(**conn_args) as con:
        con.execute(f'CREATE SCHEMA "{schema}"')
    yield u.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )
    from tests.helpers import dispose_engines

    dispose_engines()
    with psycopg.connect(**conn_args) as con:
        con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def cli(runner: CliRunner, backend: str, request: pytest.FixtureRequest) -> Cli:
    if backend == "postgres":
        return Cli(runner, request.getfixturevalue("pg_url"))
    return Cli(runner, request.getfixturevalue("db_path"))


@pytest.fixture
def mrc_copy(tmp_path: Path) -> Path:
    """A private copy of the real MRC database; skipped where ../shared is absent."""
    if not MRC_FIXTURE.is_file():
        pytest.skip(f"MRC fixture not found at {MRC_FIXTURE} (../shared is absent)")
    dest = tmp_path / "mrc-copy.db"
    shutil.copyfile(MRC_FIXTURE, dest)
    return dest


def flowcli_subprocess_cmd() -> list[str]:
    return [sys.executable, "-m", "flowcli"]


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(WIDE_ENV)
    env.pop("FLOWCLI_DB", None)
    env.pop("FLOWCLI_PAGER", None)
    env.update(extra)
    return env


MakeCli = Callable[[Path], Cli]


@pytest.fixture
def make_cli(runner: CliRunner) -> MakeCli:
    return lambda path: Cli(runner, path)


class Unprivileged:
    """Runs flowcli in a subprocess where file permissions bite even when the tests run
    as root: root keeps its uid but loses the capabilities that bypass file modes."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def prefix(self) -> list[str]:
        if os.geteuid() != 0:
            return []
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without util-linux setpriv: cannot drop DAC capabilities")
        return [setpriv, "--bounding-set", "-dac_override,-dac_read_search"]

    def run(self, *args: str, **kwargs: Any) -> Any:
        import subprocess

        return subprocess.run(
            [*self.prefix(), *flowcli_subprocess_cmd(), *args],
            capture_output=True,
            text=True,
            env=subprocess_env(),
            cwd=self.dir,
            timeout=120,
            **kwargs,
        )


@pytest.fixture
def unprivileged(tmp_path: Path) -> Unprivileged:
    return Unprivileged(tmp_path)


@pytest.fixture
def fake_llm():
    from tests.llm_server import FakeLLM

    server = FakeLLM().start()
    yield server
    server.stop()


# --- MRC's own backend (../shared/mrc) as a client of a database file ------------------


@pytest.fixture(scope="session")
def mrc_venv() -> Path:
    """MRC's virtualenv, built once per machine; skips with the reason where it cannot be."""
    from tests.mrc_backend import MrcUnavailable
    from tests.mrc_backend import mrc_venv as build

    try:
        return build()
    except MrcUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def mrc_backend(mrc_venv: Path, tmp_path: Path) -> Any:
    """Starts MRC's backend on a database file: ``mrc_backend(path)``; stopped after the test."""
    from tests.mrc_backend import MrcBackend, MrcUnavailable

    started: list[MrcBackend] = []

    def start(db: Path) -> MrcBackend:
        server = MrcBackend(mrc_venv, db, tmp_path / f"mrc-work-{len(started)}")
        try:
            server.start()
        except MrcUnavailable as exc:
            pytest.skip(str(exc))
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def pytest_configure(config: pytest.Config) -> None:
    """A suite started in the background without job control (`cmd &`, nohup) inherits
    SIGINT ignored, and so would every flowcli process a test starts: the Ctrl-C tests
    would then wait for an exit that never comes. Python's own handler here is reset to
    the default in each child at exec, and the child turns it into KeyboardInterrupt."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
