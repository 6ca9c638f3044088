"""Option types shared by several command modules."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated

import typer

from flowcli.cli.params import bounded_float, int_limit

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
YesOption = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask (required when not on a terminal).")
]
# SQLite's (and PostgreSQL's bigint) limit, so a huge id is a usage error naming the argument.
MAX_ID = 2**63 - 1
SessionIdArg = Annotated[
    int, typer.Argument(help="The session's id.", min=1, max=MAX_ID, show_default=False)
]

ResponderOpt = Annotated[
    str | None,
    typer.Option(
        "--responder", help="Responder: template or openai. Default: the flow's, else template."
    ),
]
TemplateOpt = Annotated[
    str | None, typer.Option("--template", help="Jinja template for the template responder.")
]
LlmBaseUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--llm-base-url",
        envvar="FLOWCLI_LLM_BASE_URL",
        help="OpenAI-compatible base URL (e.g. https://api.openai.com/v1).",
        show_envvar=True,
    ),
]
LlmModelOpt = Annotated[
    str | None,
    typer.Option(
        "--llm-model",
        envvar="FLOWCLI_LLM_MODEL",
        help="Model name for the openai responder.",
        show_envvar=True,
    ),
]
LlmKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--llm-api-key",
        envvar="FLOWCLI_LLM_API_KEY",
        help="API key for the openai responder (never logged).",
        show_envvar=True,
        show_default=False,
    ),
]
LlmTimeoutOpt = Annotated[
    float | None,
    typer.Option(
        "--llm-timeout",
        help="Seconds before an LLM request is abandoned (default 60).",
        parser=bounded_float(0.1, "llm_timeout"),
    ),
]


class Durability(StrEnum):
    """SQLite's synchronous level for the steps a command writes."""

    normal = "normal"
    full = "full"


DurabilityOpt = Annotated[
    Durability,
    typer.Option(
        "--durability",
        envvar="FLOWCLI_DURABILITY",
        show_envvar=True,
        case_sensitive=False,
        help="normal survives a crash or kill; full also survives power loss, at the cost "
        "of slower steps (SQLite's synchronous=FULL).",
    ),
]
RetriesOpt = Annotated[
    int,
    typer.Option(
        "--retries",
        help="Retries of a failing step (transient errors), with backoff.",
        min=0,
        max=int_limit("retries"),
    ),
]
LlmRetriesOpt = Annotated[
    int | None,
    typer.Option(
        "--llm-retries",
        help="HTTP retries inside one LLM call (429/5xx/timeouts; default 2).",
        min=0,
        max=int_limit("llm_retries"),
    ),
]
BackoffOpt = Annotated[
    float,
    typer.Option(
        "--retry-backoff",
        help="First retry delay in seconds; doubles each retry.",
        parser=bounded_float(0.0, "retry_backoff"),
    ),
]


def parse_since(value: str | None) -> datetime | None:
    """``--since``: ISO 8601; a time with a zone is converted to naive UTC (as stored)."""
    if value is None:
        return None
    from flowcli.errors import UsageError

    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--since {value!r} is not a time; use ISO 8601 such as 2026-11-28T10:00:00"
        ) from None
    if parsed.tzinfo is not None:
        from datetime import UTC

        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed
