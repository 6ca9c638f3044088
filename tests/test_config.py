"""flowcli.config: files found where they should be, precedence flag > environment >
project file > user file > default, one-line errors naming file and key, `config show`
and `config init`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flowcli.cli.app import app
from flowcli.config import OPEN_SECTIONS, load
from flowcli.errors import ConfigError
from tests.conftest import WIDE_ENV


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    project = tmp_path / "proj"
    (project / "sub").mkdir(parents=True)
    xdg = tmp_path / "xdg"
    (xdg / "flowcli").mkdir(parents=True)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    monkeypatch.chdir(project / "sub")
    return project / "flowcli.toml", xdg / "flowcli" / "config.toml"


def test_precedence_and_sources(places: tuple[Path, Path], monkeypatch) -> None:
    project, user = places
    user.write_text('retries = 4\nbusy_timeout = 9\n[llm]\nmodel = "user-model"\n')
    project.write_text('retries = 3\ndatabase = "data/x.db"\n[retention]\ndays = 30\n')
    config = load()
    assert config.value("retries") == 3 and "project file" in config.source("retries")
    assert config.value("busy_timeout") == 9.0 and "user file" in config.source("busy_timeout")
    assert config.value("llm.model") == "user-model"
    assert config.value("database") == str(project.parent / "data" / "x.db")
    assert config.source("width") == "default" and config.value("pager") == "less -R"
    monkeypatch.setenv("FLOWCLI_BUSY_TIMEOUT", "2")
    config = load()
    assert config.value("busy_timeout") == 2.0
    assert config.source("busy_timeout") == "environment $FLOWCLI_BUSY_TIMEOUT"
    config.flags = {"busy_timeout": 1.0}
    assert config.source("busy_timeout") == "flag"
    assert "retention" in OPEN_SECTIONS and config.section("retention") == {"days": 30}
    assert config.settings.retries == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour = 1\n", "unknown key colour"),
        ("[llm]\ntemperature = 1\n", "unknown key llm.temperature"),
        ('retries = "two"\n', "retries must be a whole number, not str"),
        ("busy_timeout = nan\n", "not a finite number"),
        ("width = 5\n", "below the minimum"),
        ("retries = [\n", "not valid TOML"),
        ("[unknown]\nx = 1\n", "unknown key unknown"),
    ],
)
def test_bad_files_are_one_line_naming_file_and_key(
    places: tuple[Path, Path], text: str, message: str
) -> None:
    project, _ = places
    project.write_text(text)
    with pytest.raises(ConfigError) as err:
        load()
    assert str(project) in err.value.message and message in err.value.message
    result = CliRunner().invoke(app, ["session", "list"], env=WIDE_ENV)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_config_values_reach_the_commands(places: tuple[Path, Path], monkeypatch) -> None:
    project, _ = places
    project.write_text('database = "from-config.db"\nretries = 0\n')
    runner = CliRunner()
    assert runner.invoke(app, ["demo"], env=WIDE_ENV).exit_code == 0
    assert (project.parent / "from-config.db").is_file()
    assert not Path("flowcli.db").exists()
    # A flag still wins over the file.
    other = project.parent / "flag.db"
    assert runner.invoke(app, ["--db", str(other), "demo"], env=WIDE_ENV).exit_code == 0
    assert other.is_file()
    help_text = runner.invoke(app, ["run-next", "--help"], env=WIDE_ENV).stdout
    assert "[default: 0; 0<=x<=100]" in help_text  # retries from the file
    # A group's subcommand, built only when it is looked up, gets it too.
    help_text = runner.invoke(app, ["session", "retry", "--help"], env=WIDE_ENV).stdout
    assert "[default: 0; 0<=x<=100]" in help_text


def test_show_masks_the_key_and_names_sources(places: tuple[Path, Path], monkeypatch) -> None:
    project, _ = places
    secret = "sk-verysecretkey-123456"
    project.write_text(f'[llm]\napi_key = "{secret}"\n')
    monkeypatch.setenv("FLOWCLI_LLM_MODEL", "env-model")
    runner = CliRunner()
    shown = runner.invoke(app, ["config", "show", "--json"], env=WIDE_ENV)
    assert shown.exit_code == 0 and secret not in shown.stdout
    rows = {r["key"]: r for r in json.loads(shown.stdout)["settings"]}
    assert rows["llm.model"] == {**rows["llm.model"], "value": "env-model"}
    assert rows["llm.model"]["source"] == "environment $FLOWCLI_LLM_MODEL"
    assert "project file" in rows["llm.api_key"]["source"]
    table = runner.invoke(app, ["config", "show"], env=WIDE_ENV)
    assert table.exit_code == 0 and secret not in table.stdout and "llm.api_key" in table.stdout


def test_init_writes_a_commented_file_and_refuses_to_overwrite(
    places: tuple[Path, Path],
) -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["config", "init"], env=WIDE_ENV)
    assert first.exit_code == 0
    written = Path("flowcli.toml")
    assert written.is_file() and all(
        not line.strip() or line.startswith(("#", "[")) for line in written.read_text().splitlines()
    )
    assert load().files  # it parses
    again = runner.invoke(app, ["config", "init"], env=WIDE_ENV)
    assert again.exit_code == 2 and "--force" in again.stderr
    assert runner.invoke(app, ["config", "init", "--force"], env=WIDE_ENV).exit_code == 0
    user = runner.invoke(app, ["config", "init", "--user"], env=WIDE_ENV)
    assert user.exit_code == 0 and places[1].is_file()
