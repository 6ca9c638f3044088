"""Option types and bundles shared by several command modules."""

import functools
import inspect
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NamedTuple, TypeVar, cast

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


# Where a command that deletes sessions (`db prune`, `session delete`) archives them first.
ArchiveOpt = Annotated[
    Path | None,
    typer.Option(
        "--archive",
        help="Archive file (or folder) to write first. Default: <db>.archive/<time>.jsonl.gz.",
        show_default=False,
    ),
]
NoArchiveOpt = Annotated[
    bool, typer.Option("--no-archive", help="Delete without an archive (not advised).")
]

# A session named either way (``logs 5``, ``auto --session 5``): read with session_id_given.
SessionIdOrOptionArg = Annotated[
    int | None,
    typer.Argument(
        help="The session's id (or use --session).",
        metavar="SESSION_ID",
        min=1,
        max=int_limit("count"),
        show_default=False,
    ),
]
SessionOpt = Annotated[
    int | None,
    typer.Option("--session", "-s", help="The session's id.", min=1, max=int_limit("count")),
]


def session_id_given(positional: int | None, option: int | None, *, which: str) -> int:
    """The session a command names by its positional id or by ``--session`` (both may be
    given if they agree). ``which``: the question asked when neither is given."""
    from flowcli.errors import UsageError

    if positional is not None and option is not None and positional != option:
        raise UsageError("give the session id once (positionally or with --session)")
    sid = option if option is not None else positional
    if sid is None:
        raise UsageError(which)
    return sid


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


# --- the responder options, one bundle ------------------------------------------------------
# Every command that runs steps takes the same responder options (and most of them the two
# retry options). A command declares one parameter, ``run_options: RunOptions``;
# with_run_options puts the options in its signature at that place (so --help lists them
# there) and hands the command their values as one RunOptions.

_RESPONDER_PARAMETERS: tuple[tuple[str, Any, Any], ...] = (
    ("responder", ResponderOpt, None),
    ("template", TemplateOpt, None),
    ("llm_base_url", LlmBaseUrlOpt, None),
    ("llm_model", LlmModelOpt, None),
    ("llm_api_key", LlmKeyOpt, None),
    ("llm_timeout", LlmTimeoutOpt, None),
    ("llm_retries", LlmRetriesOpt, None),
)
_RETRY_PARAMETERS: tuple[tuple[str, Any, Any], ...] = (
    ("retries", RetriesOpt, 2),
    ("retry_backoff", BackoffOpt, 0.5),
)
# Every command with run options writes steps: each takes the durability they are written with.
_DURABILITY_PARAMETERS: tuple[tuple[str, Any, Any], ...] = (
    ("durability", DurabilityOpt, Durability.normal),
)
_BUNDLE_PARAMETER = "run_options"


class RunOptions(NamedTuple):
    """What a command's responder (and retry) options say. A command without --retries
    and --retry-backoff gets their defaults, and ``retry_backoff`` None (the responder's
    own default). A NamedTuple for the start-up (docs/architecture.md)."""

    responder: str | None = None
    template: str | None = None
    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_api_key: str | None = None  # never in the repr (below)
    llm_timeout: float | None = None
    llm_retries: int | None = None
    retries: int = 2
    retry_backoff: float | None = None
    durability: str = "normal"  # "normal" or "full" (flowcli.db.connection)

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={'***' if name == 'llm_api_key' and value else repr(value)}"
            for name, value in zip(self._fields, self, strict=True)
        )
        return f"RunOptions({shown})"

    @property
    def backoff(self) -> float:
        """--retry-backoff (0.5 when the command has no such option)."""
        return 0.5 if self.retry_backoff is None else self.retry_backoff

    def responder_options(self) -> Any:
        """The engine's ResponderOptions; a --responder it does not know is a usage error.

        Built when the command asks, not when it is called, so a command checks its other
        arguments (and may need no responder at all, as with --dry-run) first.
        """
        from flowcli.engine.responders import RESPONDER_KINDS, ResponderOptions
        from flowcli.errors import UsageError

        if self.responder is not None and self.responder not in RESPONDER_KINDS:
            raise UsageError(
                f"--responder must be one of {', '.join(RESPONDER_KINDS)}, not {self.responder!r}"
            )
        return ResponderOptions(
            kind=self.responder,
            template=self.template,
            base_url=self.llm_base_url,
            model=self.llm_model,
            api_key=self.llm_api_key,
            timeout=self.llm_timeout,
            llm_retries=self.llm_retries,
            backoff=self.retry_backoff,
        )


CommandFn = TypeVar("CommandFn", bound=Callable[..., Any])


def with_run_options(*, retries: bool) -> Callable[[CommandFn], CommandFn]:
    """Give a command the responder options, and with ``retries`` also --retries and
    --retry-backoff, where its ``run_options`` parameter stands."""
    added = (
        *(_RETRY_PARAMETERS if retries else ()),
        *_DURABILITY_PARAMETERS,
        *_RESPONDER_PARAMETERS,
    )

    def decorate(command: CommandFn) -> CommandFn:
        signature = inspect.signature(command, eval_str=True)
        parameters: list[inspect.Parameter] = []
        for parameter in signature.parameters.values():
            if parameter.name != _BUNDLE_PARAMETER:
                parameters.append(parameter)
                continue
            parameters += [
                inspect.Parameter(name, parameter.kind, default=default, annotation=annotation)
                for name, annotation, default in added
            ]
        names = [name for name, _annotation, _default in added]

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in names}
            values["durability"] = str(Durability(values["durability"]).value)
            run_options = RunOptions(**values)
            ctx = kwargs.get("ctx")
            if ctx is not None:
                # Set before the command opens the database: every connection it opens
                # then runs at this synchronous level (flowcli.cli.context.open_db).
                from flowcli.cli.context import state

                state(ctx).durability = run_options.durability
            return command(*args, **kwargs, run_options=run_options)

        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        return cast(CommandFn, wrapper)

    return decorate
