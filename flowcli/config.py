"""flowcli's configuration files: where they are, what they may hold, and which layer
gives each effective value.

Precedence, highest first: a command-line flag, the environment, the project file
(``flowcli.toml`` in the working directory or the nearest folder above it), the user
file (``$XDG_CONFIG_HOME/flowcli/config.toml``, else ``~/.config/flowcli/config.toml``),
the built-in default. Files are TOML, read with the standard library's ``tomllib``.

The known keys are declared once in ``KEYS`` (typed, with their environment variable);
``Settings`` is the typed view of the effective values. Features that bring their own
table (``[retention]``) are listed in ``OPEN_SECTIONS`` and read theirs
with ``Config.section(name)``; they validate its keys themselves. Anything else is an
error naming the file and the key.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from flowcli.errors import ConfigError

PROJECT_FILE = "flowcli.toml"
USER_FILE = Path("flowcli") / "config.toml"
# Tables whose keys belong to another feature (it validates them): add a name here.
OPEN_SECTIONS = ("retention",)
MAX_FILE_BYTES = 256 * 1024


class KeySpec(NamedTuple):
    """One known configuration key: its type, environment variable, default and bounds."""

    kind: type
    env: str | None = None
    default: Any = None
    secret: bool = False
    minimum: float | None = None
    maximum: float | None = None
    help: str = ""
    # The option name the key sets as a default in every command that has it.
    option: str | None = None
    # The only values a string key may take (None: any string).
    choices: tuple[str, ...] | None = None


KEYS: dict[str, KeySpec] = {
    "database": KeySpec(
        str, env="FLOWCLI_DB", help="SQLite file (relative to this file) or SQLAlchemy URL"
    ),
    "busy_timeout": KeySpec(
        float,
        env="FLOWCLI_BUSY_TIMEOUT",
        default=5.0,
        minimum=0.0,
        maximum=86400.0,
        help="seconds to wait for another process's lock",
        option="busy_timeout",
    ),
    "retries": KeySpec(
        int,
        default=2,
        minimum=0,
        maximum=100,
        help="retries of a failing step (transient errors)",
        option="retries",
    ),
    "durability": KeySpec(
        str,
        env="FLOWCLI_DURABILITY",
        default="normal",
        choices=("normal", "full"),
        help="normal survives a crash or kill; full also survives power loss (slower steps)",
        option="durability",
    ),
    "pager": KeySpec(
        str,
        env="FLOWCLI_PAGER",
        default="less -R",
        help='pager for output longer than the screen ("" never pages)',
    ),
    "width": KeySpec(
        int, env="FLOWCLI_WIDTH", minimum=20, maximum=1000, help="output width on a terminal"
    ),
    "llm.base_url": KeySpec(
        str,
        env="FLOWCLI_LLM_BASE_URL",
        help="OpenAI-compatible base URL",
        option="llm_base_url",
    ),
    "llm.model": KeySpec(str, env="FLOWCLI_LLM_MODEL", help="model name", option="llm_model"),
    "llm.api_key": KeySpec(
        str,
        env="FLOWCLI_LLM_API_KEY",
        secret=True,
        help="API key (better in the environment than in a file)",
        option="llm_api_key",
    ),
    "llm.timeout": KeySpec(
        float,
        minimum=0.1,
        maximum=3600.0,
        help="seconds before an LLM request is abandoned",
        option="llm_timeout",
    ),
}
_TABLES = {key.split(".", 1)[0] for key in KEYS if "." in key}


class Settings(NamedTuple):
    """The effective value of every known key."""

    database: str | None
    busy_timeout: float
    retries: int
    durability: str
    pager: str | None
    width: int | None
    llm_base_url: str | None
    llm_model: str | None
    llm_api_key: str | None
    llm_timeout: float | None


class ConfigFile(NamedTuple):
    """One configuration file as read: its known keys (flattened) and its open tables."""

    path: Path
    kind: str  # "project" or "user"
    values: dict[str, Any]  # known keys, flattened ("llm.model")
    sections: dict[str, dict[str, Any]]  # the open tables, as written


class Config:
    """Every source of settings for one command: files, environment and flags."""

    def __init__(
        self,
        files: list[ConfigFile],
        env: Mapping[str, str] | None = None,
        flags: dict[str, Any] | None = None,
    ) -> None:
        self.files = files  # highest precedence first: project, then user
        self.env: Mapping[str, str] = dict(os.environ) if env is None else env
        self.flags: dict[str, Any] = {} if flags is None else flags

    def __repr__(self) -> str:
        return f"Config(files={self.files!r})"  # never the environment: it holds secrets

    def source(self, key: str) -> str:
        """Where the effective value of ``key`` comes from, for people to read."""
        return self._lookup(key)[1]

    def value(self, key: str) -> Any:
        return self._lookup(key)[0]

    def file_value(self, key: str) -> Any:
        """The value the files give (None if neither does): a default for options."""
        for f in self.files:
            if key in f.values:
                return f.values[key]
        return None

    def _lookup(self, key: str) -> tuple[Any, str]:
        spec = KEYS[key]
        if self.flags.get(key) is not None:
            return self.flags[key], "flag"
        if spec.env and self.env.get(spec.env) is not None:
            return _from_env(key, spec, self.env[spec.env]), f"environment ${spec.env}"
        for f in self.files:
            if key in f.values:
                return f.values[key], f"{f.kind} file {f.path}"
        if key == "pager" and self.env.get("PAGER") is not None:
            return self.env["PAGER"], "environment $PAGER"
        return spec.default, "default"

    def section(self, name: str) -> dict[str, Any]:
        """An open table (``[retention]``): the project file's keys over the user file's."""
        if name not in OPEN_SECTIONS:
            raise KeyError(f"{name!r} is not an open section; add it to OPEN_SECTIONS")
        merged: dict[str, Any] = {}
        for f in reversed(self.files):
            merged.update(f.sections.get(name, {}))
        return merged

    @property
    def settings(self) -> Settings:
        v = self.value
        return Settings(
            database=v("database"),
            busy_timeout=v("busy_timeout"),
            retries=v("retries"),
            durability=v("durability"),
            pager=v("pager"),
            width=v("width"),
            llm_base_url=v("llm.base_url"),
            llm_model=v("llm.model"),
            llm_api_key=v("llm.api_key"),
            llm_timeout=v("llm.timeout"),
        )

    def option_defaults(self) -> dict[str, Any]:
        """Option name → value for every key a file sets that commands take as an option
        (Click then ranks it below the flag and the option's environment variable)."""
        out: dict[str, Any] = {}
        for key, spec in KEYS.items():
            if spec.option is None:
                continue
            value = self.file_value(key)
            if value is not None:
                out[spec.option] = value
        return out

    def shown(self) -> list[dict[str, Any]]:
        """Every key with its effective value (secrets masked) and its source."""
        rows = []
        for key, spec in KEYS.items():
            value, source = self._lookup(key)
            if spec.secret and value:
                value = mask(str(value))
            rows.append({"key": key, "value": value, "source": source, "help": spec.help})
        return rows


def mask(secret: str) -> str:
    """Enough of a secret to recognise it, never enough to use it."""
    if len(secret) <= 8:
        return "****"
    return f"{secret[:3]}…{secret[-2:]} ({len(secret)} characters)"


def _from_env(key: str, spec: KeySpec, raw: str) -> Any:
    if spec.kind is str:
        _check_choice(raw, spec, f"environment ${spec.env}")
        return raw
    try:
        value = spec.kind(raw)
    except ValueError:
        raise ConfigError(
            f"environment ${spec.env}: {raw!r} is not {_kind_name(spec.kind)}"
        ) from None
    _check_range(value, spec, f"environment ${spec.env}")
    return value


def _kind_name(kind: type) -> str:
    return {int: "a whole number", float: "a number", str: "a string"}[kind]


def _check_range(value: Any, spec: KeySpec, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: {value} is not a finite number")
    if spec.minimum is not None and value < spec.minimum:
        raise ConfigError(f"{where}: {value} is below the minimum {spec.minimum:g}")
    if spec.maximum is not None and value > spec.maximum:
        raise ConfigError(f"{where}: {value} is above the maximum {spec.maximum:g}")


def _check_choice(value: str, spec: KeySpec, where: str) -> None:
    if spec.choices is not None and value not in spec.choices:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(spec.choices)}")


def _coerce(key: str, raw: Any, path: Path) -> Any:
    spec = KEYS[key]
    where = f"{path}: {key}"
    if spec.kind is float and isinstance(raw, int) and not isinstance(raw, bool):
        raw = float(raw)
    if not isinstance(raw, spec.kind) or isinstance(raw, bool):
        raise ConfigError(f"{where} must be {_kind_name(spec.kind)}, not {type(raw).__name__}")
    if isinstance(raw, str):
        _check_choice(raw, spec, where)
    else:
        _check_range(raw, spec, where)
    return raw


def parse_file(path: Path, kind: str) -> ConfigFile:
    """Read and check one file; every problem is one line naming the file and the key."""
    import tomllib

    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError(f"{path}: {size:,} bytes is too large for a config file")
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    values: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    for name, raw in data.items():
        if name in OPEN_SECTIONS:
            if not isinstance(raw, dict):
                raise ConfigError(f"{path}: {name} must be a table ([{name}])")
            sections[name] = raw
        elif name in _TABLES:
            if not isinstance(raw, dict):
                raise ConfigError(f"{path}: {name} must be a table ([{name}])")
            for sub, sub_raw in raw.items():
                key = f"{name}.{sub}"
                if key not in KEYS:
                    raise ConfigError(f"{path}: unknown key {key}; {_known()}")
                values[key] = _coerce(key, sub_raw, path)
        elif name in KEYS:
            values[name] = _coerce(name, raw, path)
        else:
            raise ConfigError(f"{path}: unknown key {name}; {_known()}")
    db = values.get("database")
    if isinstance(db, str):
        if not db.strip():
            raise ConfigError(f"{path}: database must not be empty")
        if "://" not in db:
            # A path in a file is relative to that file, wherever flowcli runs from.
            values["database"] = str((path.parent / Path(db).expanduser()).resolve())
    return ConfigFile(path=path, kind=kind, values=values, sections=sections)


def _known() -> str:
    return "known keys: " + ", ".join(KEYS) + ", and the tables " + ", ".join(OPEN_SECTIONS)


def project_file(start: Path | None = None) -> Path | None:
    """``flowcli.toml`` in ``start`` (the working directory) or the nearest folder above."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / PROJECT_FILE
        if candidate.is_file():
            return candidate
    return None


def user_file(env: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if env is None else env
    base = environ.get("XDG_CONFIG_HOME")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
    return root / USER_FILE


def load(
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: dict[str, Any] | None = None,
) -> Config:
    environ = dict(os.environ if env is None else env)
    files = []
    project = project_file(cwd)
    if project is not None:
        files.append(parse_file(project, "project"))
    user = user_file(environ)
    if user.is_file():
        files.append(parse_file(user, "user"))
    return Config(files=files, env=environ, flags=dict(flags or {}))


STARTER = """\
# flowcli configuration. Precedence: flag > environment > this project file >
# the user file (~/.config/flowcli/config.toml) > built-in default.
# `flowcli config show` prints every effective value and where it came from.

# The database: a SQLite file (relative to this file) or a SQLAlchemy URL.
# database = "flowcli.db"

# Seconds to wait for another process's lock before giving up.
# busy_timeout = 5.0

# Retries of a failing step (transient errors), with backoff.
# retries = 2

# "normal" survives a crash or kill; "full" also survives power loss (slower steps).
# durability = "normal"

# Pager for output longer than the screen; "" never pages.
# pager = "less -R"

# Output width on a terminal (default: the terminal's).
# width = 100

[llm]
# base_url = "https://api.openai.com/v1"
# model = "gpt-4o-mini"
# timeout = 60.0
# The API key is better kept in the environment ($FLOWCLI_LLM_API_KEY) than here.
# api_key = ""
"""


def write_starter(path: Path, *, force: bool = False) -> Path:
    """Write the commented starter file; refuse to replace one unless ``force``."""
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists; pass --force to replace it")
    if path.exists() and not path.is_file():
        raise ConfigError(f"{path} exists and is not a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(STARTER, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be written: {exc.strerror or exc}") from None
    return path
