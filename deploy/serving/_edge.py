"""The ASGI layer in front of every route: the body limit, then request metrics.

A body above the limit gets 413 before any route or parser reads it, whether
its size is announced (``Content-Length``) or streamed in chunks. Every answer,
413s included, is counted by route template (never the raw path: a model name
in a path is one label value per route, not per model) and status code.
"""

from __future__ import annotations

import time

import orjson

from deploy.serving import _metrics as m

__all__ = ["Edge"]


class Edge:
    def __init__(self, app, max_body_bytes: int):
        self.app = app
        self.limit = max_body_bytes
        self._children = {}  # (route, code) -> (requests counter, latency histogram): labels() is a lookup under a lock

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = {"code": 500}

        async def send_counting(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            if scope["method"] in ("POST", "PUT", "PATCH"):
                receive = await self._buffered(scope, receive)
                if receive is None:
                    await _too_large(send_counting, self.limit)
                    return
            await self.app(scope, receive, send_counting)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            children = self._children.get((label, status["code"]))
            if children is None:
                children = self._children[label, status["code"]] = (
                    m.REQUESTS.labels(label, str(status["code"])), m.LATENCY.labels(label))
            children[0].inc()
            children[1].observe(time.perf_counter() - t0)

    async def _buffered(self, scope, receive):
        """Read the whole body up to the limit; ``None`` when it is larger."""
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    if int(value) > self.limit:
                        return None
                except ValueError:
                    pass
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            body = message.get("body", b"")
            size += len(body)
            if size > self.limit:
                return None
            chunks.append(body)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay


async def _too_large(send, limit: int) -> None:
    body = orjson.dumps({"error": "too_large", "detail": f"request body is over the limit of {limit} bytes"})
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
