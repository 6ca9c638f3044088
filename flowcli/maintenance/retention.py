"""The retention policy: ``[retention]`` in a config file, applied by ``db prune --policy``.

``RetentionPolicy.from_mapping`` validates the table (unknown keys, bad durations and
counts are refused with the file and key named). ``load_retention_table`` is the one
place that reads files; it is kept small and separate so the shared config loader can
replace it without touching the policy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from flowcli.errors import UsageError

# A config file is a few lines; anything bigger is not one (and is not read whole).
# Durations beyond a century are mistakes, and would overflow date arithmetic.
MAX_DURATION = timedelta(days=36_500)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION = re.compile(r"(\d{1,9})\s*([smhdw])")


def parse_duration(text: str, what: str = "--older-than") -> timedelta:
    """``90d``, ``12h``, ``2w``, ``1d12h`` … (s, m, h, d, w) as a timedelta."""
    raw = str(text).strip().lower()
    pos = 0
    seconds = 0
    for match in _DURATION.finditer(raw):
        if raw[pos : match.start()].strip():
            break
        seconds += int(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not raw or pos == 0 or raw[pos:].strip():
        raise UsageError(
            f"{what} {text!r} is not a duration; use a number and a unit, such as 90d, 12h, "
            "2w or 1d12h (units s, m, h, d, w)"
        )
    if seconds > MAX_DURATION.total_seconds():
        raise UsageError(f"{what} {text!r} is longer than 100 years")
    return timedelta(seconds=seconds)


@dataclass(frozen=True)
class RetentionPolicy:
    """What ``db prune --policy`` keeps: sessions ended within ``older_than`` and the
    newest ``keep_last`` of each flow; the rest is archived to ``archive_dir``."""

    older_than: str | None = None
    keep_last: int | None = None
    archive_dir: Path | None = None
    source: str | None = None  # the file(s) the values came from

    KEYS = ("older_than", "keep_last", "archive_dir")

    @property
    def older_than_delta(self) -> timedelta | None:
        return None if self.older_than is None else parse_duration(self.older_than)

    @property
    def is_empty(self) -> bool:
        return self.older_than is None and self.keep_last is None

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], source: str = "[retention]", base: Path | None = None
    ) -> RetentionPolicy:
        """A validated policy from a ``[retention]`` table; ``base`` resolves a relative
        archive_dir (the folder of the file that named it)."""
        if not isinstance(data, Mapping):
            raise UsageError(f"{source}: [retention] must be a table")
        unknown = sorted(str(k) for k in data if k not in cls.KEYS)
        if unknown:
            raise UsageError(
                f"{source}: unknown key(s) in [retention]: {', '.join(unknown)} "
                f"(known: {', '.join(cls.KEYS)})"
            )
        older_than = data.get("older_than")
        if older_than is not None:
            if not isinstance(older_than, str):
                raise UsageError(f"{source}: retention.older_than must be a string such as '90d'")
            parse_duration(older_than, f"{source}: retention.older_than")
        keep_last = data.get("keep_last")
        if keep_last is not None and (
            isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 0
        ):
            raise UsageError(f"{source}: retention.keep_last must be a whole number ≥ 0")
        if keep_last is not None and keep_last > 1_000_000_000:
            raise UsageError(f"{source}: retention.keep_last is implausibly large")
        archive_dir = data.get("archive_dir")
        folder: Path | None = None
        if archive_dir is not None:
            if not isinstance(archive_dir, str) or not archive_dir.strip() or "\x00" in archive_dir:
                raise UsageError(f"{source}: retention.archive_dir must be a folder path")
            folder = Path(archive_dir).expanduser()
            if not folder.is_absolute() and base is not None:
                folder = (base / folder).resolve()
        return cls(older_than=older_than, keep_last=keep_last, archive_dir=folder, source=source)

    def to_mapping(self) -> dict[str, Any]:
        """The policy as ``config show`` prints it (unset keys are None)."""
        return {
            "older_than": self.older_than,
            "keep_last": self.keep_last,
            "archive_dir": str(self.archive_dir) if self.archive_dir is not None else None,
            "source": self.source,
        }


def load_retention_table() -> tuple[dict[str, Any], list[str], Path | None]:
    """``[retention]`` merged from the config files (flowcli.config: the project file's
    keys over the user file's).

    Returns the merged table, the files it came from (weakest first), and the folder of
    the file whose ``archive_dir`` wins (relative folders are taken from there).
    """
    from flowcli.config import load

    config = load()
    sources: list[str] = []
    archive_base: Path | None = None
    for file in reversed(config.files):  # weakest first, so the winning folder is last
        table = file.sections.get("retention")
        if table is None:
            continue
        sources.append(str(file.path))
        if "archive_dir" in table:
            archive_base = file.path.parent
    return config.section("retention"), sources, archive_base


def retention_policy() -> RetentionPolicy:
    """The policy in force, validated; empty when no file sets ``[retention]``."""
    table, sources, base = load_retention_table()
    source = " + ".join(sources) if sources else "[retention]"
    return RetentionPolicy.from_mapping(table, source=source, base=base)
