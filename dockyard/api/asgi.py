"""Small pieces shared by the ASGI middlewares (audit trail, request metrics)."""

from __future__ import annotations

from typing import Any


class StatusRecorder:
    """Wraps an ASGI `send` and remembers the status of the response it starts; 500 until one
    starts, which is what the client sees when the application raises before answering."""

    def __init__(self, send: Any) -> None:
        self.send = send
        self.status = 500

    async def __call__(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self.send(message)
