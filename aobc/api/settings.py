"""How the HTTP layer behaves (as opposed to the backend's options)."""

from __future__ import annotations

from dataclasses import dataclass

from aobc.api.auth import TokenStore


@dataclass
class Settings:
    tokens: TokenStore | None  # None: --no-auth, every request is the local operator
    heartbeat: float = 15.0  # seconds between SSE heartbeats on an idle stream
    stall: float = 30.0  # seconds a client may block an SSE write before it is disconnected
    max_body: int = 32 * 1024 * 1024  # bytes in one request body
