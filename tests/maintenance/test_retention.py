"""The retention policy: durations, the `[retention]` table, the config files it is read
from, and `db prune --policy` applying it."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from flowcli.errors import UsageError
from flowcli.maintenance.retention import (
    RetentionPolicy,
    parse_duration,
    retention_policy,
)
from tests.conftest import Cli
from tests.flows_fixtures import LOOP_FLOW
from tests.helpers import import_flow


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90d", timedelta(days=90)),
        ("12h", timedelta(hours=12)),
        ("2w", timedelta(weeks=2)),
        ("1d12h", timedelta(days=1, hours=12)),
        (" 45 m ", timedelta(minutes=45)),
        ("0s", timedelta(0)),
        ("30D", timedelta(days=30)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "d", "90", "1y", "-3d", "3d x", "1.5d", "9" * 40 + "d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(UsageError):
        parse_duration(text)


def test_from_mapping_validates_every_key(tmp_path: Path) -> None:
    policy = RetentionPolicy.from_mapping(
        {"older_than": "30d", "keep_last": 5, "archive_dir": "arch"}, "f.toml", tmp_path
    )
    assert policy.older_than_delta == timedelta(days=30) and policy.keep_last == 5
    assert policy.archive_dir == (tmp_path / "arch").resolve()
    assert policy.to_mapping() == {
        "older_than": "30d",
        "keep_last": 5,
        "archive_dir": str((tmp_path / "arch").resolve()),
        "source": "f.toml",
    }
    bad = [
        ({"older_than": 30}, "must be a string"),
        ({"older_than": "soon"}, "not a duration"),
        ({"keep_last": -1}, "whole number"),
        ({"keep_last": True}, "whole number"),
        ({"keep_last": "5"}, "whole number"),
        ({"archive_dir": ""}, "folder path"),
        ({"archive_dir": 3}, "folder path"),
        ({"keep_forever": True}, "unknown key(s) in [retention]: keep_forever"),
    ]
    for data, message in bad:
        with pytest.raises(UsageError, match=None) as err:
            RetentionPolicy.from_mapping(data, "f.toml")
        assert message in str(err.value) and str(err.value).startswith("f.toml: ")


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    project = tmp_path / "project" / "sub"
    project.mkdir(parents=True)
    monkeypatch.chdir(project)
    return home


def test_the_project_file_wins_over_the_users(config_home: Path, tmp_path: Path) -> None:
    assert retention_policy().is_empty
    user = config_home / "flowcli" / "config.toml"
    user.parent.mkdir(parents=True)
    user.write_text('[retention]\nolder_than = "90d"\nkeep_last = 3\narchive_dir = "a"\n')
    project = tmp_path / "project" / "flowcli.toml"
    project.write_text('[retention]\nolder_than = "7d"\n')
    policy = retention_policy()
    assert (policy.older_than, policy.keep_last) == ("7d", 3)
    assert policy.archive_dir == (user.parent / "a").resolve()
    assert policy.source == f"{user} + {project}"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[retention\n", "not valid TOML"),
        ("retention = 3\n", "retention must be a table"),
        ('[retention]\nolder_than = "forever"\n', "not a duration"),
    ],
)
def test_a_bad_config_file_is_one_line_naming_it(
    cli: Cli, config_home: Path, tmp_path: Path, content: str, message: str
) -> None:
    cli.ok("db", "upgrade")
    (tmp_path / "project" / "flowcli.toml").write_text(content)
    result = cli("db", "prune", "--policy", "--dry-run")
    assert result.exit_code == 2 and message in result.stderr
    assert "flowcli.toml" in result.stderr and result.stderr.count("\n") == 1


def test_prune_policy_applies_the_files_values(cli: Cli, config_home: Path, tmp_path: Path) -> None:
    flow = import_flow(cli, LOOP_FLOW)
    ids = [int(cli.json("session", "create", "--flow", str(flow))["id"]) for _ in range(4)]
    for sid, days in zip(ids, [60, 45, 40, 1], strict=True):
        cli.ok("session", "cancel", str(sid))
        cli.sql(
            "UPDATE sessions SET ended_at = :t WHERE id = :id",
            t=datetime.utcnow() - timedelta(days=days),
            id=sid,
        )
    (tmp_path / "project" / "flowcli.toml").write_text(
        '[retention]\nolder_than = "30d"\nkeep_last = 1\narchive_dir = "../kept"\n'
    )
    plan = cli.json("db", "prune", "--policy", "--dry-run")
    assert [s["id"] for s in plan["sessions"]] == ids[:3]
    assert Path(plan["archive"]).parent == (tmp_path / "kept").resolve()
    # Options on the command line win over the file.
    plan = cli.json("db", "prune", "--policy", "--keep-last", "2", "--dry-run")
    assert [s["id"] for s in plan["sessions"]] == ids[:2]
    report = cli.json("db", "prune", "--policy", "--yes")
    assert sorted(report["pruned_sessions"]) == ids[:3]
    archive = Path(report["archive"])
    assert archive.parent == (tmp_path / "kept").resolve() and archive.is_file()
    header = cli.json("db", "restore-archive", str(archive), "--dry-run")["archive"]["header"]
    assert header["policy"]["older_than"] == "30d"


def test_config_show_includes_the_retention_policy(
    cli: Cli, config_home: Path, tmp_path: Path
) -> None:
    project = tmp_path / "project" / "flowcli.toml"
    project.write_text('[retention]\nolder_than = "30d"\nkeep_last = 5\n')
    rows = {r["key"]: r for r in cli.json("config", "show")["settings"]}
    assert rows["retention.older_than"]["value"] == "30d"
    assert rows["retention.keep_last"]["value"] == 5
    assert str(project) in rows["retention.older_than"]["source"]
    assert rows["retention.archive_dir"]["value"] is None
    table = cli.ok("config", "show").stdout
    assert "retention.older_than" in table and "30d" in table
