"""Responders: what writes a step's message.

``template`` (the default) renders a sandboxed Jinja template: offline, deterministic,
rendered before the step's write transaction opens (like every evaluation). ``openai`` calls an
OpenAI-compatible Chat Completions endpoint over HTTP; it is never called inside a
write transaction (the runner claims the step, calls it, then records the result).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from flowcli.engine.builtin_template import (
    BUILTIN_TEMPLATE_NAMES,
    DEFAULT_TEMPLATE,
    render_builtin,
)
from flowcli.errors import ExpressionError, ResponderError, UsageError

if TYPE_CHECKING:
    from flowcli.sandbox.templates import Template


# What each task asks of the speaker; used as the LLM's instruction.
TASK_INSTRUCTIONS = {
    "ask_question": "Ask {target} one clear question about the topic.",
    "answer_question": "Answer the latest question from {target}.",
    "review_answer": "Review the latest answer: say what is right and what is missing.",
    "question": "Ask a question that moves the discussion forward.",
    "summarize": "Summarise the discussion so far.",
    "evaluate": "Evaluate the points made so far.",
    "suggest": "Make a concrete suggestion.",
    "challenge": "Challenge the latest claim with a counter-argument.",
    "support": "Support the latest claim with an argument.",
    "conclude": "Conclude the discussion.",
    "comment": "Comment on the discussion.",
}


@dataclass
class ResponderRequest:
    session_id: int
    topic: str
    speaker: str
    target: str | None
    task_type: str
    speaker_prompt: str | None
    context: list[Any]  # MessageView objects, oldest first
    names: Mapping[str, Any]  # the expression names of this execution


@dataclass
class ResponderReply:
    content: str
    tokens: dict[str, int] | None = None
    model: str | None = None


class Responder(Protocol):
    name: str
    # True when respond() does no network I/O: no claim is needed around it.
    is_local: bool

    def respond(self, request: ResponderRequest) -> ResponderReply: ...

    def describe(self) -> dict[str, Any]: ...


@dataclass
class TemplateResponder:
    template: str = DEFAULT_TEMPLATE
    name: str = "template"
    is_local: bool = True

    def __post_init__(self) -> None:
        # The built-in template renders without Jinja (flowcli.engine.builtin_template);
        # any other is compiled, and so checked, now.
        self._builtin = self.template == DEFAULT_TEMPLATE
        self._compiled: Template | None = None
        if not self._builtin:
            self._sandboxed()

    def _sandboxed(self) -> Template:
        if self._compiled is None:
            from flowcli.sandbox.templates import compile_template

            self._compiled = compile_template(self.template)
        return self._compiled

    @property
    def names_used(self) -> frozenset[str]:
        """The expression names the template reads (read before it renders)."""
        if self._builtin:
            return BUILTIN_TEMPLATE_NAMES
        return self._sandboxed().names_used

    def respond(self, request: ResponderRequest) -> ResponderReply:
        names = request.names
        if self._builtin:
            text = render_builtin(names)
            if text is not None:
                return ResponderReply(content=text)
        compiled = self._sandboxed()
        values = {k: names[k] for k in compiled.names_used if k in names}
        try:
            return ResponderReply(content=compiled.render(values))
        except ExpressionError as exc:
            raise ResponderError(f"template responder: {exc}") from None

    def describe(self) -> dict[str, Any]:
        return {"type": "template"}


@dataclass
class OpenAIResponder:
    """OpenAI-compatible Chat Completions. The API key never leaves the request header.

    Whatever comes back (an error body, a reply, an exception's text) is scrubbed of the
    key and of the base URL's credentials, in any shape a server may echo them, before it
    is cut to length, stored or shown; the base URL itself is only ever shown masked.
    """

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 60.0
    retries: int = 2
    temperature: float | None = None
    max_tokens: int | None = None
    backoff: float = 0.5
    max_retry_after: float = 30.0
    name: str = "openai"
    is_local: bool = False

    def __post_init__(self) -> None:
        from flowcli.redaction import Scrubber, mask_url, url_secrets

        self._scrub = Scrubber([self.api_key, *url_secrets(self.base_url)])
        self._shown_url = self._scrub(mask_url(self.base_url))

    def describe(self) -> dict[str, Any]:
        return {"type": "openai", "model": self._scrub(self.model), "base_url": self._shown_url}

    def build_messages(self, request: ResponderRequest) -> list[dict[str, str]]:
        messages: list[dict[str, str]] = []
        if request.speaker_prompt:
            messages.append({"role": "system", "content": request.speaker_prompt})
        for msg in request.context:
            role = "assistant" if msg.speaker == request.speaker else "user"
            messages.append({"role": role, "content": f"{msg.speaker or 'unknown'}: {msg.content}"})
        instruction = TASK_INSTRUCTIONS.get(request.task_type, "Respond to the discussion.")
        instruction = instruction.format(target=request.target or "the others")
        messages.append(
            {
                "role": "user",
                "content": (
                    f"Topic: {request.topic}\nYou are {request.speaker}. "
                    f"Task ({request.task_type}): {instruction}"
                ),
            }
        )
        return messages

    def respond(self, request: ResponderRequest) -> ResponderReply:
        body: dict[str, Any] = {"model": self.model, "messages": self.build_messages(request)}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        last: ResponderError | None = None
        for attempt in range(self.retries + 1):
            try:
                return self._post(body)
            except ResponderError as exc:
                last = exc
                if not exc.transient or attempt == self.retries:
                    break
                # capped like a server's Retry-After: a huge backoff doubled is still a wait
                delay = min(self.backoff * (2**attempt), self.max_retry_after)
                if exc.retry_after is not None:
                    delay = min(max(exc.retry_after, 0.0), self.max_retry_after)
                time.sleep(delay)
        assert last is not None
        raise last

    def _post(self, body: dict[str, Any]) -> ResponderReply:
        import httpx

        url = self.base_url.rstrip("/") + "/chat/completions"
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        deadline = time.monotonic() + self.timeout
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(self.timeout)) as client,
                client.stream("POST", url, json=body, headers=headers) as response,
            ):
                chunks = []
                # A server that drips bytes slowly never trips a per-read timeout;
                # the overall deadline does.
                for chunk in response.iter_bytes():
                    chunks.append(chunk)
                    if time.monotonic() > deadline:
                        raise ResponderError(
                            f"LLM response took longer than {self.timeout:g}s", transient=True
                        )
                raw = b"".join(chunks)
                status = response.status_code
                retry_after = _retry_after(response.headers.get("retry-after"))
        except httpx.TimeoutException:
            raise ResponderError(
                f"LLM request to {self._shown_url} timed out after {self.timeout:g}s",
                transient=True,
            ) from None
        except httpx.ConnectError as exc:
            raise ResponderError(
                self._scrub(f"cannot connect to LLM at {self._shown_url}: {exc}"), transient=True
            ) from None
        except httpx.HTTPError as exc:
            raise ResponderError(
                self._scrub(f"LLM request failed: {type(exc).__name__}: {exc}"), transient=True
            ) from None
        if status == 429 or status >= 500:
            raise ResponderError(
                f"LLM answered HTTP {status}", transient=True, retry_after=retry_after
            )
        if status >= 400:
            # Scrub first, then cut: cutting first could leave part of a secret at the cut.
            # The prefix scrubbed is long enough for any escaped spelling of the secret.
            detail = self._scrub.cut(raw[:_SCRUBBED_PREFIX].decode("utf-8", "replace"), 200)
            raise ResponderError(f"LLM rejected the request: HTTP {status}: {detail}")
        try:
            data = json.loads(raw)
            content = data["choices"][0]["message"]["content"]
            if not isinstance(content, str):
                raise TypeError("content is not text")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ResponderError(
                self._scrub(f"LLM returned a malformed response ({exc})"), transient=True
            ) from None
        usage = data.get("usage") if isinstance(data, dict) else None
        tokens = None
        if isinstance(usage, dict):
            tokens = {k: int(v) for k, v in usage.items() if isinstance(v, int)}
        model = data.get("model") or self.model
        # A reply that echoes the key (a hostile or broken server) must not store it.
        return ResponderReply(
            content=self._scrub(content),
            tokens=tokens,
            model=self._scrub(model) if isinstance(model, str) else self.model,
        )


_SCRUBBED_PREFIX = 64 * 1024  # bytes of an error body scrubbed before its first 200 are shown


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None


@dataclass
class ResponderOptions:
    """What the command line says about responders (flags beat the flow's settings)."""

    kind: str | None = None  # template | openai; None = the flow's, else template
    template: str | None = None
    base_url: str | None = None
    model: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout: float | None = None
    llm_retries: int | None = None
    backoff: float | None = None  # first retry delay inside one LLM call (doubles)


RESPONDER_KINDS = ("template", "openai")


def build_responder(options: ResponderOptions, flow_responder: dict[str, Any] | None) -> Responder:
    flow = flow_responder or {}
    kind = options.kind or flow.get("type") or "template"
    if kind == "template":
        template = options.template or flow.get("template") or DEFAULT_TEMPLATE
        try:
            return TemplateResponder(template=template)
        except ExpressionError as exc:
            raise UsageError(f"responder template is invalid: {exc}") from None
    if kind == "openai":
        base_url = (
            options.base_url or os.environ.get("FLOWCLI_LLM_BASE_URL") or flow.get("base_url")
        )
        model = options.model or os.environ.get("FLOWCLI_LLM_MODEL") or flow.get("model")
        if not base_url:
            raise UsageError("the openai responder needs --llm-base-url or FLOWCLI_LLM_BASE_URL")
        if not model:
            raise UsageError("the openai responder needs --llm-model or FLOWCLI_LLM_MODEL")
        timeout = options.timeout or flow.get("timeout") or 60.0
        return OpenAIResponder(
            base_url=str(base_url),
            model=str(model),
            api_key=options.api_key or os.environ.get("FLOWCLI_LLM_API_KEY"),
            timeout=float(timeout),
            retries=options.llm_retries if options.llm_retries is not None else 2,
            backoff=options.backoff if options.backoff is not None else 0.5,
            temperature=flow.get("temperature"),
            max_tokens=flow.get("max_tokens"),
        )
    raise UsageError(f"unknown responder {kind!r}; choose one of: {', '.join(RESPONDER_KINDS)}")
