"""Hostile input at the command line: never a traceback, escapes never run, bombs stop
within seconds, and oversized content leaves the log's snapshots bounded.

Parsers and the expression language have their own property tests (tests/flows,
tests/sandbox/test_expressions.py); these go through the commands a user types.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import cpu_seconds
from tests.llm_server import Behaviour, FakeLLM
from tests.reliability.kill import (
    create_session,
    flowcli,
    import_flow,
    loop_flow,
    subprocess_env,
)

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SNAPSHOT_LIMIT = 20_000  # the log's JSON columns stay under this, whatever came in


def assert_clean(result: Any) -> None:
    """No traceback; a failure is exit 1 or 2 with a last line ``Error: …`` that explains."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    if result.exit_code != 0:
        assert result.exit_code in (1, 2), result.exit_code
        lines = [line for line in result.stderr.split("\n") if line.strip()]
        assert lines and lines[-1].startswith("Error: "), result.stderr
        # The catch-all ("unexpected …, re-run with --debug") means nobody explained it.
        assert "unexpected" not in lines[-1], lines[-1]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "hostile.db"
    create_session(path, import_flow(path, loop_flow(3)))
    return path


# --- command-line arguments -----------------------------------------------------------

IDS = st.one_of(
    st.integers(min_value=-(2**100), max_value=2**100).map(str),
    st.text(max_size=40),
    st.sampled_from(
        ["0", "-1", "9223372036854775807", "9223372036854775808", "1e3", "0x10", " 7", "١", ""]
    ),
)
ID_COMMANDS = [
    ("session", "show"),
    ("logs",),
    ("logs", "--session"),
    ("run-next",),
    ("run-next", "--dry-run"),
    ("explain",),
    ("flow", "show"),
    ("flow", "export"),
    ("session", "create", "--flow"),
    ("session", "pause"),
    ("logs", "1", "--limit"),
    ("auto", "--max-steps", "1"),
]


@FUZZ
@given(command=st.sampled_from(ID_COMMANDS), value=IDS)
def test_any_id_argument_fails_cleanly(db: Path, command: tuple[str, ...], value: str) -> None:
    assert_clean(flowcli(db, *command, value))


def _nested_json(depth: int, kind: str) -> str:
    if kind == "list":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=30,
)
VAR_VALUES = st.one_of(
    st.text(max_size=200),
    JSON_VALUES.map(lambda v: json.dumps(v, allow_nan=True)),
    st.builds(_nested_json, st.integers(1, 20_000), st.sampled_from(["list", "dict"])),
    st.sampled_from(["{{ 7 * 7 }}", "{% import 'os' as os %}", "__import__('os')", "\x00"]),
)


@FUZZ
@given(
    key=st.text(max_size=12),
    value=VAR_VALUES,
    topic=st.none() | st.text(max_size=300),
)
def test_any_var_and_topic_fail_cleanly_or_create_a_session(
    db: Path, key: str, value: str, topic: str | None
) -> None:
    args = ["session", "create", "--flow", "1", "--var", f"{key}={value}"]
    if topic is not None:
        args += ["--topic", topic]
    result = flowcli(db, *args)
    assert_clean(result)
    if result.exit_code == 0:
        sid = result.stdout.strip().splitlines()[-1]
        shown = flowcli(db, "session", "show", sid, "--json")
        assert_clean(shown)
        assert shown.exit_code == 0


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("paths")
    (folder / "a-folder.yaml").mkdir()
    (folder / "binary.yaml").write_bytes(bytes(range(256)) * 8)
    (folder / "empty.yaml").write_bytes(b"")
    return folder


@FUZZ
@given(
    command=st.sampled_from([("flow", "validate"), ("flow", "import")]),
    name=st.one_of(
        st.text(max_size=300),
        st.sampled_from(["a-folder.yaml", "binary.yaml", "empty.yaml", "", ".", "..", "/"]),
    ),
)
def test_any_flow_path_fails_cleanly(
    db: Path, files: Path, command: tuple[str, ...], name: str
) -> None:
    path = name if name.startswith("/") else str(files / name)
    assert_clean(flowcli(db, *command, path))


@pytest.mark.parametrize("command", ["import", "validate"])
def test_control_characters_in_a_file_name_stay_on_one_line(
    db: Path, files: Path, command: str
) -> None:
    result = flowcli(db, "flow", command, str(files / "evil\rname\x1eend\u2028.yaml"))
    assert result.exit_code == 1
    # \r would send the cursor back over "Error:"; \x1e and U+2028 split lines in editors.
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines
    assert "\r" not in lines[0] and "\u240d" in lines[0]  # shown as the visible "␍"


YAMLISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["name", "steps", "roles", "speaker", "task_type", "logic_config"])
            | st.text(max_size=8),
            inner,
            max_size=5,
        )
    ),
    max_leaves=25,
)


@FUZZ
@given(document=YAMLISH, as_json=st.booleans())
def test_any_flow_document_fails_cleanly(
    db: Path, files: Path, document: Any, as_json: bool
) -> None:
    path = files / ("doc.json" if as_json else "doc.yaml")
    path.write_text(json.dumps(document) if as_json else yaml.safe_dump(document), "utf-8")
    for command in ("validate", "import"):
        assert_clean(flowcli(db, "flow", command, str(path)))


# --- escapes never run, bombs stop ------------------------------------------------------

PAYLOAD_MODULE = "flowcli_escape_payload"


@pytest.fixture
def tripwire(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An importable module that leaves a file behind if anything ever imports it."""
    marker = tmp_path / "ESCAPED"
    (tmp_path / f"{PAYLOAD_MODULE}.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, PAYLOAD_MODULE, raising=False)
    return marker


def _escapes(marker: Path) -> list[str]:
    touch = f"open({str(marker)!r}, 'w')"
    return [
        f"__import__('{PAYLOAD_MODULE}')",
        f"__import__('os').system('touch {marker}')",
        f"().__class__.__base__.__subclasses__()[0]('{marker}')",
        f"[c for c in ().__class__.__mro__[1].__subclasses__() if 'wrap' in c.__name__][0]"
        f".__init__.__globals__['sys'].modules['os'].system('touch {marker}')",
        touch,
        f'exec("{touch}")',
        f"eval(\"__import__('{PAYLOAD_MODULE}')\")",
        "lambda: 1",
    ]


def _template_escapes(marker: Path) -> list[str]:
    return [
        "{{ cycler.__init__.__globals__.os.system('touch " + str(marker) + "') }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{% import '" + PAYLOAD_MODULE + "' as p %}{{ p }}",
        "{% include '/etc/passwd' %}",
        "{{ self.__init__.__globals__.__builtins__.open('" + str(marker) + "', 'w') }}",
        "{{ lipsum.__globals__['os'].popen('touch " + str(marker) + "').read() }}",
        "{{ namespace.__init__.__globals__ }}",
        # Names built at run time, past any static check.
        "{{ ''|attr('__cla' ~ 'ss__')|attr('__mro__') }}",
        "{{ '{0.__class__.__mro__}'.format(speaker) }}",
        "{{ speaker.format_map }}",
    ]


def _flow_with(condition: str | None = None, template: str | None = None) -> str:
    doc: dict[str, Any] = {
        "name": "escape attempt",
        "roles": {"A": {"prompt": "You are A."}},
        "steps": [{"speaker_role_ref": "A", "task_type": "comment", "context_scope": "none"}],
    }
    if condition is not None:
        doc["steps"][0]["logic_config"] = {"condition": condition}
    if template is not None:
        doc["responder"] = {"type": "template", "template": template}
    return yaml.safe_dump(doc)


def test_escape_attempts_never_execute(tmp_path: Path, tripwire: Path) -> None:
    db = tmp_path / "escape.db"
    sid = create_session(db, import_flow(db, loop_flow(1)))
    attempts = []
    for expr in _escapes(tripwire):
        attempts.append(("condition", _flow_with(condition=expr)))
        attempts.append(
            (
                "end_condition",
                _flow_with().replace(
                    "name: escape attempt",
                    "name: escape attempt\ntermination_config:\n"
                    f"  end_condition: {json.dumps(expr)}",
                ),
            )
        )
    for tpl in _template_escapes(tripwire):
        attempts.append(("template", _flow_with(template=tpl)))
        # The same template given on the command line, and as a --var value (data only).
        assert_clean(flowcli(db, "run-next", str(sid), "--template", tpl))
        created = flowcli(db, "session", "create", "--flow", "1", "--var", f"x={tpl}")
        assert created.exit_code == 0
        var_sid = created.stdout.strip()
        ran = flowcli(db, "run-next", var_sid, "--template", "{{ vars.x }}", "--json")
        assert ran.exit_code == 0, ran.stderr
        assert json.loads(ran.stdout)["message"]["content"] == tpl  # printed, not run
    (tmp_path / "pyyaml.yaml").write_text(
        f"!!python/object/apply:os.system ['touch {tripwire}']\n", encoding="utf-8"
    )
    for what, text in attempts:
        path = tmp_path / f"{what}.yaml"
        path.write_text(text, encoding="utf-8")
        for command in ("validate", "import"):
            assert_clean(flowcli(db, "flow", command, str(path)))
        imported = flowcli(db, "flow", "import", str(path), "--json")
        if imported.exit_code == 0:
            flow_id = json.loads(imported.stdout)["id"]
            created = flowcli(db, "session", "create", "--flow", str(flow_id))
            assert_clean(flowcli(db, "run-next", created.stdout.strip()))
    for command in ("validate", "import"):
        assert_clean(flowcli(db, "flow", command, str(tmp_path / "pyyaml.yaml")))
    assert not tripwire.exists(), "an escape attempt ran"
    assert PAYLOAD_MODULE not in sys.modules, "an escape attempt imported a module"


BOMBS = [
    ("condition", "9**9**9**9"),
    ("condition", "'a' * 10**10"),
    ("condition", "[1] * 10**9"),
    ("condition", "len(str(10**100000))"),
    ("condition", "[[x for x in range(10**5)] for y in range(10**5)]"),
    ("template", "{% for i in range(10**9) %}x{% endfor %}"),
    ("template", "{% for i in range(10**5) %}{% for j in range(10**5) %}x{% endfor %}{% endfor %}"),
    ("template", "{{ 'x' * 10**10 }}"),
    ("template", "{{ (2 ** 10000000) }}"),
    ("template", "{% set a = 'x' * 99999 %}{{ a ~ a ~ a ~ a ~ a ~ a ~ a ~ a ~ a ~ a ~ a ~ a }}"),
]


@pytest.mark.parametrize(("where", "bomb"), BOMBS)
def test_expression_and_template_bombs_fail_within_seconds(
    tmp_path: Path, where: str, bomb: str
) -> None:
    db = tmp_path / "bomb.db"
    text = _flow_with(condition=bomb) if where == "condition" else _flow_with(template=bomb)
    path = tmp_path / "bomb.yaml"
    path.write_text(text, encoding="utf-8")
    started = cpu_seconds()
    imported = flowcli(db, "flow", "import", str(path), "--json")
    assert_clean(imported)
    if imported.exit_code == 0:  # not caught statically: it must fail when it runs
        created = flowcli(db, "session", "create", "--flow", str(json.loads(imported.stdout)["id"]))
        ran = flowcli(db, "run-next", created.stdout.strip())
        assert_clean(ran)
        assert ran.exit_code == 1
    assert cpu_seconds() - started < 45  # CPU seconds, not minutes (or memory exhaustion)


# --- oversized content: the log stays bounded --------------------------------------------


def _snapshots_bounded(log: dict[str, Any]) -> None:
    for column in ("context_snapshot", "result_data", "step_snapshot"):
        value = log[column]
        text = value if isinstance(value, str) else json.dumps(value)
        assert len(text) <= SNAPSHOT_LIMIT, (column, len(text))


def test_a_two_megabyte_message_keeps_the_log_bounded(tmp_path: Path) -> None:
    db = tmp_path / "big.db"
    sid = create_session(db, import_flow(db, loop_flow(1)))
    # 990,000 two-byte characters: a ~2 MB message (the template cap is 1,000,000 chars).
    template = "{% for i in range(11) %}{{ 'é' * 90000 }}{% endfor %}"
    result = flowcli(db, "run-next", str(sid), "--template", template, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert len(data["message"]["content"].encode()) == 1_980_000  # stored whole
    _snapshots_bounded(data["log"])
    logs = flowcli(db, "logs", str(sid), "--json")
    assert logs.exit_code == 0 and len(logs.stdout) < 100_000


def test_a_three_megabyte_llm_reply_keeps_the_log_bounded(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    db = tmp_path / "llm-big.db"
    sid = create_session(db, import_flow(db, loop_flow(1)))
    fake_llm.then(Behaviour(content="z" * 3_000_000))
    args = ["--responder", "openai", "--llm-base-url", fake_llm.base_url, "--llm-model", "m"]
    result = flowcli(db, "run-next", str(sid), *args, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert len(data["message"]["content"]) == 3_000_000
    _snapshots_bounded(data["log"])


def test_huge_and_deeply_nested_vars_are_truncated_with_a_marker(tmp_path: Path) -> None:
    db = tmp_path / "vars.db"
    flow_id = import_flow(db, loop_flow(1))
    many = [f"--var=k{i}={i}" for i in range(300)]
    created = flowcli(
        db,
        "session",
        "create",
        "--flow",
        str(flow_id),
        "--var",
        "long=" + "y" * 60_000,
        "--var",
        "deep=" + _nested_json(900, "list"),
        "--var",
        "wide=" + json.dumps({f"key{i}": "v" * 300 for i in range(150)}),
        *many,
    )
    assert created.exit_code == 0, created.stderr
    result = flowcli(db, "run-next", created.stdout.strip(), "--json")
    assert result.exit_code == 0, result.stderr
    log = json.loads(result.stdout)["log"]
    _snapshots_bounded(log)
    assert "…[truncated" in log["context_snapshot"]
    # Too deep to even parse is refused up front, in one line.
    refused = flowcli(
        db,
        "session",
        "create",
        "--flow",
        str(flow_id),
        "--var",
        "d=" + _nested_json(30_000, "list"),
    )
    assert refused.exit_code == 2 and "nested too deeply" in refused.stderr
    assert_clean(refused)


def test_an_endless_flow_file_is_refused(tmp_path: Path) -> None:
    # /dev/zero never ends; a 1 GiB address-space cap turns "eats the machine" into a failure.
    def cap_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    proc = subprocess.run(
        [sys.executable, "-m", "flowcli", "--db", str(tmp_path / "z.db"), "flow", "validate"]
        + ["/dev/zero"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        preexec_fn=cap_memory,
        timeout=60,
    )
    assert proc.returncode == 1 and proc.stderr.startswith("Error: ")
    assert "too large" in proc.stderr or "larger than" in proc.stderr
