"""What the benchmark scripts share: alternating rounds, the measured flowcli install,
target lines, and the results file that run_all.py gathers into one table.

Every script measures flowcli and its baseline in the same run, alternating, so a busy
machine slows both alike; the ratio is what it reports. Scripts are run as files
(``python benchmarks/X.py``), so they import this module as a sibling.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = Path(os.environ.get("FLOWCLI_BENCH_CACHE", Path.home() / ".cache" / "flowcli-bench"))
PG_URL = os.environ.get("FLOWCLI_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


# --- timing ------------------------------------------------------------------------------


def alternate(
    runners: dict[str, Callable[[], float]], rounds: int, *, label: str = ""
) -> dict[str, list[float]]:
    """Run every runner once per round, in an order that rotates each round, so no runner
    always goes first (caches, a neighbour's burst). Each runner returns its own seconds."""
    names = list(runners)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            times[name].append(runners[name]())
        if label:
            print(f"  {label}: round {r + 1}/{rounds} done", file=sys.stderr)
    return times


def timed_process(
    cmd: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    stdout: Any = subprocess.DEVNULL,
) -> float:
    """Wall seconds of a child process, which must succeed."""
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, stdout=stdout, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed: {done.stderr.decode()[-600:]}")
    return elapsed


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator; NaN when a tiny run left the baseline at or below zero
    (a marginal cost can come out negative in noise) instead of a crash."""
    return numerator / denominator if denominator > 0 else float("nan")


# --- targets and results -----------------------------------------------------------------


@dataclass
class Ratio:
    """One measured ratio against its target (``op`` is ``<=`` or ``>=``)."""

    what: str
    value: float
    target: float
    op: str = "<="
    detail: str = ""

    @property
    def met(self) -> bool:
        return self.value <= self.target if self.op == "<=" else self.value >= self.target

    def line(self) -> str:
        verdict = "met" if self.met else "MISSED"
        detail = f" ({self.detail})" if self.detail else ""
        return f"target: {self.what} {self.op} {self.target:g}: {self.value:.2f} {verdict}{detail}"


@dataclass
class Results:
    """What a script hands to run_all.py (``--results FILE``): ratios and context."""

    script: str
    ratios: list[Ratio] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)

    def add(self, ratio: Ratio) -> Ratio:
        self.ratios.append(ratio)
        print(ratio.line())
        return ratio

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(text)

    def write(self, path: str | None) -> None:
        if not path:
            return
        data = {
            "script": self.script,
            "ratios": [{**asdict(r), "met": r.met} for r in self.ratios],
            "notes": self.notes,
            "versions": self.versions,
        }
        Path(path).write_text(json.dumps(data, indent=2))


def add_results_option(parser: Any) -> None:
    parser.add_argument(
        "--results", metavar="FILE", help="also write the ratios as JSON (for run_all.py)"
    )


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.release()} {platform.machine()}, {os.cpu_count()} cpus "
        f"({cpu}); Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}; "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )


def package_versions(python: str, names: Sequence[str]) -> dict[str, str]:
    """Installed versions of ``names`` in the interpreter ``python`` (absent ones left out)."""
    code = (
        "import json, sys, importlib.metadata as m\n"
        "out = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))"
    )
    done = subprocess.run([python, "-c", code, *names], capture_output=True, text=True, check=True)
    versions: dict[str, str] = json.loads(done.stdout)
    return versions


FLOWCLI_LIBRARIES = (
    "flowcli",
    "typer",
    "rich",
    "SQLAlchemy",
    "alembic",
    "Jinja2",
    "psycopg",
    "textual",
)


# --- the flowcli being measured ----------------------------------------------------------


@dataclass
class FlowcliInstall:
    """A flowcli to run as users do: its console script and interpreter."""

    python: Path
    script: Path
    how: str

    def cmd(self, *args: str) -> list[str]:
        return [str(self.script), *args]


def _pip(python: Path, *args: str, cwd: Path | None = None) -> None:
    """Run pip quietly; its output is shown only when it fails."""
    done = subprocess.run(
        [str(python), "-m", "pip", *args], capture_output=True, text=True, cwd=cwd
    )
    if done.returncode != 0:
        raise SystemExit(f"pip {' '.join(args[:2])} failed:\n{(done.stdout + done.stderr)[-1500:]}")


def _site_packages(python: Path) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return Path(out)


def _copy_source(dest: Path) -> Path:
    """The working tree (uncommitted changes included) without build debris, so building
    the wheel never writes into the checkout."""
    ignore = shutil.ignore_patterns(
        ".git",
        "__pycache__",
        "*.egg-info",
        "build",
        "dist",
        ".ci",
        ".venv",
        ".env",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        ".hypothesis",
        "*.db",
    )
    src = dest / "src"
    shutil.copytree(REPO, src, ignore=ignore)
    return src


def _dependency_key() -> str:
    text = (REPO / "pyproject.toml").read_text()
    return hashlib.sha256(f"{sys.version}\n{text}".encode()).hexdigest()[:12]


def built_flowcli(
    work: Path, *, log: Callable[[str], None], extras: Sequence[str] = ("postgres",)
) -> FlowcliInstall:
    """A wheel of the working tree installed (not editable) in a venv cached under
    ~/.cache/flowcli-bench; the wheel is rebuilt and reinstalled on every call, the
    dependencies only when pyproject.toml changes (or an extra not installed yet is
    asked for: tui_start.py needs ``tui``). Bytecode is compiled (compileall)."""
    venv = CACHE / f"flowcli-{_dependency_key()}"
    python = venv / "bin" / "python"
    if not python.exists():
        log(f"creating {venv} (first run: installs flowcli's dependencies)")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        _pip(python, "install", "-q", "setuptools>=68", "wheel")
        fresh = True
    else:
        fresh = False
    src = _copy_source(work)
    wheels = work / "wheels"
    _pip(python, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src))
    wheel = next(wheels.glob("flowcli-*.whl"))
    install = ["install", "-q", "--force-reinstall"] + ([] if fresh else ["--no-deps"])
    wanted = f"{wheel}[{','.join(extras)}]"
    _pip(python, *install, wanted, cwd=work)
    if not fresh and set(extras) - {"postgres"}:
        # Without --force-reinstall: installs only the extra's dependencies still missing.
        _pip(python, "install", "-q", wanted, cwd=work)
    compile_bytecode(python)
    return FlowcliInstall(python, venv / "bin" / "flowcli", f"wheel {wheel.name} in {venv}")


def existing_flowcli(venv: Path) -> FlowcliInstall:
    python = venv / "bin" / "python"
    script = venv / "bin" / "flowcli"
    if not script.exists():
        raise SystemExit(f"{venv} has no bin/flowcli: install flowcli there first")
    return FlowcliInstall(python, script, f"given venv {venv}")


def compile_bytecode(python: Path) -> None:
    subprocess.run(
        [str(python), "-m", "compileall", "-q", "-j", "0", str(_site_packages(python))],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def bytecode_coverage(python: Path) -> str:
    """How much of site-packages and the standard library has up-to-date bytecode."""
    code = r"""
import importlib.util, os, sys, sysconfig, json
out = {}
for name, root in (("site-packages", sysconfig.get_paths()["purelib"]),
                   ("stdlib", sysconfig.get_paths()["stdlib"])):
    total = fresh = 0
    for folder, dirs, files in os.walk(root):
        if name == "stdlib" and "site-packages" in folder:
            continue
        for f in files:
            if not f.endswith(".py"):
                continue
            total += 1
            src = os.path.join(folder, f)
            pyc = importlib.util.cache_from_source(src)
            if os.path.exists(pyc):
                fresh += 1
    out[name] = (fresh, total)
print(json.dumps(out))
"""
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    data = json.loads(done.stdout)
    return ", ".join(
        f"{name} {fresh / max(total, 1):.0%} of {total:,} modules"
        for name, (fresh, total) in data.items()
    )


def flowcli_install(
    args: Any, work: Path, *, log: Callable[[str], None], extras: Sequence[str] = ("postgres",)
) -> FlowcliInstall:
    """``--venv PATH`` if given, else a freshly built wheel (see built_flowcli)."""
    if getattr(args, "venv", None):
        install = existing_flowcli(Path(args.venv))
        compile_bytecode(install.python)
        return install
    return built_flowcli(work, log=log, extras=extras)


def installed_from(install: FlowcliInstall) -> str:
    """Where the measured interpreter imports flowcli from (must not be the checkout)."""
    done = subprocess.run(
        [str(install.python), "-c", "import flowcli; print(flowcli.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    )
    return done.stdout.strip()


_STARTUP_VARIABLES = (
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PYTHONPROFILEIMPORTTIME",
)


def measured_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment measured commands run in: the caller's, less the variables that
    change how Python starts (a user's shell has none of them)."""
    env = {k: v for k, v in os.environ.items() if k not in _STARTUP_VARIABLES}
    env.update(extra or {})
    return env


def stdlib_path() -> str:
    return sysconfig.get_paths()["stdlib"]


# --- flows used by several scripts ---------------------------------------------------------

LOOP_FLOW = """\
name: bench
termination_config: {{max_steps: 100000000}}
roles:
  A: {{prompt: "You are A."}}
  B: {{prompt: "You are B."}}
steps:
  - speaker_role_ref: A
    target_role_ref: B
    task_type: ask_question
    context_scope: {scope}
  - speaker_role_ref: B
    target_role_ref: A
    task_type: answer_question
    context_scope: {scope}
    logic_config: {{next_step_order: 1, max_loops: {loops}}}
"""

# With the built-in template a message is "[A → B] ask_question on "<topic>" (round 1,
# step 1, loop 7)": this topic makes each message about 1 KB.
KB_TOPIC = ("a topic of about one kilobyte " * 34)[:960]


def loop_flow(path: Path, *, scope: str = "last_message", loops: int = 50_000_000) -> Path:
    path.write_text(LOOP_FLOW.format(scope=scope, loops=loops))
    return path


def prepare_session(
    flowcli: Sequence[str],
    db: str,
    flow: Path,
    *,
    topic: str = KB_TOPIC,
    env: dict[str, str] | None = None,
) -> None:
    """Import the flow and create session 1 on ``db`` (a path or URL) with flowcli itself."""
    env = dict(env or os.environ, FLOWCLI_DB=db)
    subprocess.run(
        [*flowcli, "flow", "import", str(flow)], check=True, capture_output=True, env=env
    )
    subprocess.run(
        [*flowcli, "session", "create", "--flow", "1", "--topic", topic],
        check=True,
        capture_output=True,
        env=env,
    )


def checkpoint(path: Path) -> None:
    """Fold the WAL into the file, so a plain copy of the file is the whole database."""
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


def copy_db(src: Path, dest: Path) -> Path:
    for leftover in dest.parent.glob(dest.name + "*"):
        leftover.unlink()
    shutil.copyfile(src, dest)
    return dest


def table_digest(path: Path) -> dict[str, str]:
    """A digest of every table's rows, to check two databases hold the same data."""
    con = sqlite3.connect(path)
    out = {}
    for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"):
        h = hashlib.sha256()
        for row in con.execute(f'SELECT * FROM "{name}" ORDER BY rowid'):
            h.update(repr(row).encode())
        out[name] = h.hexdigest()
    con.close()
    return out


def durability_support(flowcli: Sequence[str]) -> bool:
    """Whether this flowcli has a durability setting of its own (issue 16): its help
    mentions it. Until then the benchmarks set the pragma through sqltrace's hook."""
    texts = []
    for args in (["--help"], ["auto", "--help"]):
        done = subprocess.run([*flowcli, *args], capture_output=True, text=True)
        texts.append(done.stdout)
    return "durability" in "\n".join(texts).lower()


# --- PostgreSQL ----------------------------------------------------------------------------


def pg_conninfo(url: str = PG_URL) -> str:
    """The libpq form of a SQLAlchemy PostgreSQL URL."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def pg_url(dbname: str, url: str = PG_URL) -> str:
    """``url`` with its database name replaced."""
    base, _, _ = url.rpartition("/")
    return f"{base}/{dbname}"


def pg_admin(url: str = PG_URL) -> tuple[Any, str]:
    """(an autocommit psycopg connection, "") or (None, why not)."""
    try:
        import psycopg
    except ImportError:
        return None, "psycopg is not installed"
    try:
        conn = psycopg.connect(pg_conninfo(url), autocommit=True, connect_timeout=5)
    except Exception as exc:  # noqa: BLE001 - any reason means: no server to measure
        return None, str(exc).strip().splitlines()[0]
    return conn, ""


def pg_digest(url: str) -> dict[str, str]:
    import psycopg

    out = {}
    with psycopg.connect(pg_conninfo(url)) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public' ORDER BY table_name"
            )
        ]
        for name in names:
            h = hashlib.sha256()
            for row in conn.execute(f'SELECT * FROM "{name}" ORDER BY 1'):
                h.update(repr(row).encode())
            out[name] = h.hexdigest()
    return out


def flowcli_command(
    python: str, synchronous: str, supported: bool, env: dict[str, str]
) -> tuple[list[str], dict[str, str], str]:
    """(command prefix, environment, how) to run flowcli at a synchronous level: its own
    setting when it has one (FLOWCLI_DURABILITY), else sqltrace.py's pragma hook."""
    if synchronous == "normal":
        return [python, "-m", "flowcli"], env, "flowcli's default"
    if supported:
        return (
            [python, "-m", "flowcli"],
            dict(env, FLOWCLI_DURABILITY=synchronous),
            (f"FLOWCLI_DURABILITY={synchronous}"),
        )
    hook = [python, str(HERE / "sqltrace.py"), "run", "--synchronous", synchronous, "--"]
    return hook, env, "sqltrace's pragma hook (this flowcli has no durability setting)"


# --- other frameworks' own virtualenvs -------------------------------------------------------


def peer_venv(
    name: str, packages: Sequence[str], probe: str, *, install: bool
) -> tuple[Path | None, str]:
    """The interpreter of a venv under ~/.cache/flowcli-bench/venvs/NAME holding
    ``packages`` (created and filled with pip when missing and ``install``), or (None, why).
    These frameworks are never flowcli's dependencies."""
    venv = CACHE / "venvs" / name
    python = venv / "bin" / "python"
    works = (
        python.exists()
        and subprocess.run([str(python), "-c", probe], capture_output=True).returncode == 0
    )
    if works:
        return python, ""
    if not install:
        return None, f"no venv at {venv} (run without --no-install to create it)"
    print(f"installing {' '.join(packages)} into {venv}", file=sys.stderr)
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    _pip(python, "install", "-q", *packages)
    if subprocess.run([str(python), "-c", probe], capture_output=True).returncode != 0:
        return None, f"{name} installed but `{probe}` fails"
    return python, ""
