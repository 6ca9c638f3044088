"""Number options are finite and bounded (issue 14): nan, inf, negative and absurd values
are usage errors (exit 2) naming the option, before any work starts.

`worker --lease nan` used to print a thread traceback and exit 0 "idle" with work
waiting; `--busy-timeout nan` said "unexpected ValueError"; `--retry-backoff 1e308` slept
forever; `--max-idle nan` never exited; `--concurrency 99999999999999999999` grew to 1.6 GB.
"""

from __future__ import annotations

import pytest

from flowcli.cli.app import app
from flowcli.cli.params import LIMITS, bounded_float
from tests.conftest import Cli

BAD_VALUES = [
    ("--busy-timeout", "nan", ("session", "list")),
    ("--busy-timeout", "inf", ("session", "list")),
    ("--busy-timeout", "-1", ("session", "list")),
    ("--busy-timeout", "1e308", ("session", "list")),
    ("--lease", "nan", ("worker", "--max-idle", "0")),
    ("--lease", "inf", ("worker", "--max-idle", "0")),
    ("--max-idle", "nan", ("worker",)),
    ("--max-idle", "-inf", ("worker",)),
    ("--poll", "nan", ("worker", "--max-idle", "0")),
    ("--concurrency", "99999999999999999999", ("worker", "--max-idle", "0")),
    ("--concurrency", "0", ("worker", "--max-idle", "0")),
    ("--batch", "1e3", ("worker", "--max-idle", "0")),
    ("--llm-timeout", "nan", ("run-next", "1")),
    ("--llm-timeout", "0", ("run-next", "1")),
    ("--retry-backoff", "1e308", ("auto", "1")),
    ("--retry-backoff", "inf", ("auto", "1")),
    ("--retry-backoff", "NaN", ("worker", "--max-idle", "0")),
    ("--retries", "99999999999999999999", ("auto", "1")),
    ("--llm-retries", "-1", ("run-next", "1")),
    ("--interval", "nan", ("logs", "1", "--follow")),
    ("--limit", "99999999999999999999", ("logs", "1")),
    ("--max-steps", "nan", ("auto", "1")),
]


@pytest.mark.parametrize(("option", "value", "command"), BAD_VALUES)
def test_non_finite_and_absurd_numbers_are_usage_errors(
    cli: Cli, option: str, value: str, command: tuple[str, ...]
) -> None:
    args = [option, value, *command] if option == "--busy-timeout" else [*command, option, value]
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.stderr
    # names the option and the value (the wording of the reason is the error layer's)
    assert option in errors[0] and value in errors[0], errors[0]
    assert "unexpected" not in errors[0]


def test_the_busy_timeout_from_the_environment_is_checked_too(cli: Cli) -> None:
    result = cli.runner.invoke(
        app,
        ["--db", str(cli.db), "session", "list"],
        env={"FLOWCLI_BUSY_TIMEOUT": "nan"},
    )
    assert result.exit_code == 2
    assert "not a finite number" in result.stderr


def test_values_at_the_bounds_are_accepted(cli: Cli) -> None:
    lease = f"{LIMITS['lease']:g}"
    result = cli(
        "--busy-timeout",
        "3600",
        "worker",
        "--max-idle",
        "0",
        "--lease",
        lease,
        "--concurrency",
        "256",
        "--retry-backoff",
        "600",
        "--poll",
        "0.01",
    )
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("parser", "value", "expected"),
    [
        (bounded_float(0.5, "lease"), "30", 30.0),
        (bounded_float(0.5, "lease"), " 0.5 ", 0.5),
        (bounded_float(0.0, "busy_timeout"), 5.0, 5.0),  # a default passes through
    ],
)
def test_the_parser_accepts_finite_values_in_range(
    parser: object, value: object, expected: object
) -> None:
    assert parser(value) == expected  # type: ignore[operator]
