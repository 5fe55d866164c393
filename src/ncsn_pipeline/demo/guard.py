"""An ASGI middleware in front of the demo: only the two documented endpoints run, requests stay small, no uploads.

Gradio routes every queued event through ``POST .../queue/join`` with an ``fn_index``; without this guard any
index can be joined (private UI callbacks included, and an unknown one answers HTTP 500), a request body may be
arbitrarily large, and ``/gradio_api/upload`` stores whatever it is sent although the demo takes no uploads.
"""

from __future__ import annotations

import json
from typing import Awaitable, Callable, Collection, Dict

Receive = Callable[[], Awaitable[Dict]]
Send = Callable[[Dict], Awaitable[None]]

# The endpoints that run (one per tab), by api_name: the only ones a request may reach.
PUBLIC_ENDPOINTS = ("generate", "playground", "inpaint", "edit")
MAX_REQUEST_BYTES = 64 * 1024  # the demo's inputs are a few numbers and names
MAX_JSON_DEPTH = 16  # the demo's bodies are an object holding a flat list: deeper nesting is never legitimate


class RequestGuard:
    """Refuse uploads (404), direct (unqueued) calls (404), bodies over ``max_body_bytes`` (413), JSON bodies that
    are malformed or nested deeper than `MAX_JSON_DEPTH` (400) and queue joins of other functions (404).

    Args:
        app: The ASGI application (Gradio's).
        allowed_fn_indices: The ``fn_index`` values that may be joined: the documented endpoints.
        allowed_api_names: Their names, for the ``/gradio_api/call/<name>`` route.
        max_body_bytes: The largest request body accepted.
    """

    def __init__(
        self,
        app,
        allowed_fn_indices: Collection[int],
        allowed_api_names: Collection[str] = PUBLIC_ENDPOINTS,
        max_body_bytes: int = MAX_REQUEST_BYTES,
    ):
        self.app = app
        self.allowed_fn_indices = set(allowed_fn_indices)
        self.allowed_api_names = set(allowed_api_names)
        names = [f"/{name}" for name in allowed_api_names]
        self.endpoints_text = " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Dict, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if path.rstrip("/").endswith("/upload"):
            return await _answer(send, 404, "This demo takes no uploads.")
        if scope.get("method") not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        if "/gradio_api/run/" in path or "/gradio_api/api/" in path:  # direct calls would bypass the queue
            return await _answer(send, 404, f"Unknown endpoint: call {self.endpoints_text} through the queue.")
        if "/gradio_api/call/" in path and path.rstrip("/").rsplit("/", 1)[-1] not in self.allowed_api_names:
            return await _answer(send, 404, f"Unknown endpoint: call {self.endpoints_text}.")
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            return await _answer(send, 413, f"Request body over {self.max_body_bytes} bytes.")
        body, more = b"", True
        while more:  # read it all (it is small), so that a body without Content-Length is bounded too
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body_bytes:
                return await _answer(send, 413, f"Request body over {self.max_body_bytes} bytes.")
        if body.strip() and _json_nesting(body) > MAX_JSON_DEPTH:
            # Checked before any parser sees it: Python's json recursion fails on ~1,000 levels (RecursionError).
            return await _answer(send, 400, f"The request body nests JSON deeper than {MAX_JSON_DEPTH} levels.")
        if path.rstrip("/").endswith("/queue/join"):
            try:
                fn_index = json.loads(body).get("fn_index")
            except (ValueError, AttributeError):
                return await _answer(send, 400, "The request body is not a JSON object.")
            if fn_index not in self.allowed_fn_indices:
                return await _answer(send, 404, f"Unknown endpoint: call {self.endpoints_text}.")
        replayed = False

        async def replay() -> Dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


def _json_nesting(body: bytes) -> int:
    """The deepest nesting of ``[`` / ``{`` in a JSON text (brackets inside strings do not count), without parsing."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # closing quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


async def _answer(send: Send, status: int, message: str) -> None:
    payload = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
