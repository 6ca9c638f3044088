"""A real HTTP server on 127.0.0.1 that answers like an OpenAI-compatible API.

Tests script its behaviour per request: a good answer, HTTP errors (with
Retry-After), a slow answer, malformed JSON, or a slow drip of bytes.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Behaviour:
    kind: str = "ok"  # ok | status | slow | malformed | drip | close
    status: int = 200
    content: str | None = None
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


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
