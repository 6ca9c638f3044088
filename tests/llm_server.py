"""A real HTTP server on 127.0.0.1 that answers like an OpenAI-compatible API.

Tests script its behaviour per request: a good answer, HTTP errors (with
Retry-After), a slow answer, malformed JSON, a slow drip of bytes, or a hostile server
that echoes the API key it was sent back in one of ECHO_SHAPES.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote


@dataclass
class Behaviour:
    kind: str = "ok"  # ok | status | slow | malformed | drip | close | echo
    status: int = 200
    content: str | None = None
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    shape: str = "raw"  # for kind="echo": one of ECHO_SHAPES
    # Answer only once the test sets it (a condition to wait on, not a delay to guess).
    gate: threading.Event | None = None


def _escape_every_character(text: str) -> str:
    return "".join(f"\\u{ord(char):04x}" for char in text)


# How a hostile server echoes a key: (HTTP status, body) from the key.
ECHO_SHAPES: dict[str, Any] = {
    # the key straddles the 200th character, where error bodies used to be cut
    "error-at-the-cut": lambda key: (400, ("x" * (200 - len(key) // 2) + key).encode()),
    # JSON escapes: the dash escaped (sk\u002d…), and every character escaped
    "error-json-dash": lambda key: (
        400,
        ('{"error": {"message": "bad key ' + key.replace("-", "\\u002d") + '"}}').encode(),
    ),
    "error-json-every-char": lambda key: (
        400,
        ('{"error": "' + _escape_every_character(key) + '"}').encode(),
    ),
    "error-percent-encoded": lambda key: (
        404,
        f"no route /v1/chat/completions?api_key={quote(key, safe='')}".encode(),
    ),
    "error-raw": lambda key: (401, f"invalid api key: {key}".encode()),
    # a 200 reply that repeats the key in its content and its model name
    "reply": lambda key: (
        200,
        json.dumps(
            {
                "model": key,
                "choices": [{"message": {"role": "assistant", "content": f"your key is {key}"}}],
            }
        ).encode(),
    ),
    "malformed-reply": lambda key: (200, ('{"choices": [' + key).encode()),
}


def key_sent(headers: dict[str, str]) -> str:
    """The secret a request carried: the bearer token, else a basic-auth password."""
    auth = headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        return auth[len("Bearer ") :]
    if auth.startswith("Basic "):
        return base64.b64decode(auth[len("Basic ") :]).decode().partition(":")[2]
    return ""


class FakeLLM:
    def __init__(self) -> None:
        self.script: deque[Behaviour] = deque()
        self.default = Behaviour()
        self.requests: list[dict[str, Any]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> FakeLLM:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def then(self, *behaviours: Behaviour) -> FakeLLM:
        self.script.extend(behaviours)
        return self

    def _next(self) -> Behaviour:
        return self.script.popleft() if self.script else self.default

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append(
                    {"path": self.path, "body": body, "headers": dict(self.headers.items())}
                )
                b = fake._next()
                if b.gate is not None:
                    b.gate.wait(timeout=300)
                if b.delay and b.kind != "drip":
                    time.sleep(b.delay)
                if b.kind == "close":
                    self.close_connection = True
                    return
                if b.kind == "status":
                    payload = json.dumps({"error": {"message": f"status {b.status}"}}).encode()
                    self._send(b.status, payload, b.headers)
                    return
                if b.kind == "malformed":
                    self._send(200, b'{"choices": [ this is not json', b.headers)
                    return
                if b.kind == "echo":
                    status, echoed = ECHO_SHAPES[b.shape](key_sent(dict(self.headers.items())))
                    self._send(status, echoed, b.headers)
                    return
                content = b.content
                if content is None:
                    last = body.get("messages", [{}])[-1].get("content", "")
                    content = f"reply #{len(fake.requests)} to: {last[:40]}"
                payload = json.dumps(
                    {
                        "id": "chatcmpl-test",
                        "object": "chat.completion",
                        "model": body.get("model", "test-model"),
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "message": {"role": "assistant", "content": content},
                            }
                        ],
                        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
                    }
                ).encode()
                if b.kind == "drip":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    for byte in payload:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(b.delay)
                    return
                self._send(200, payload, b.headers)

            def _send(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler
