"""Errors the control plane answers with: an HTTP status, a stable code, diagnostics.

Every backend raises these (never a bare exception) for anything that is the request's
fault; the app turns them into `{"error": {...}}` bodies. Anything else is a bug and
answers 500 with a crash id (see `app.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aobc.diagnostics import Diagnostic


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        diagnostics: Sequence[Diagnostic] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.diagnostics = tuple(diagnostics)
        self.headers = headers or {}

    def to_json(self) -> dict[str, Any]:
        return {
            "error": {
                "status": self.status,
                "code": self.code,
                "message": self.message,
                "diagnostics": [d.to_json() for d in self.diagnostics],
            }
        }


def not_found(message: str) -> ApiError:
    return ApiError(404, "not-found", message)


def conflict(message: str) -> ApiError:
    return ApiError(409, "conflict", message)


def forbidden(message: str, code: str = "forbidden") -> ApiError:
    return ApiError(403, code, message)


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def invalid(diagnostics: Sequence[Diagnostic] | str, code: str = "invalid") -> ApiError:
    """422: the request is well-formed HTTP but its content is refused (with diagnostics)."""
    if isinstance(diagnostics, str):
        return ApiError(422, code, diagnostics)
    diags = tuple(diagnostics)
    first = next((d for d in diags if d.is_error), diags[0] if diags else None)
    code = first.code.name if first is not None and first.code is not None else code
    return ApiError(422, code, first.message if first is not None else "invalid", diags)
