"""POSTing JSON to a model API: retries with backoff, Retry-After, errors without secrets.

Model APIs shed load with 429 and fail transiently with 5xx (Anthropic's 529 "overloaded"
included), so those and network failures are retried with exponential backoff and jitter, or
after exactly the delay the server asks for. Everything else fails at once with the API's
own error message, with the API key scrubbed out of it.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx

from aobc.runtime.providers.base import DEFAULT_TIMEOUT_S, ErrorKind, ProviderError

Sleep = Callable[[float], Awaitable[None]]

RETRY_STATUSES: Final = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How often and how long to wait. A server asking for more than `max_retry_after_s`
    fails at once: waiting less would only be refused again."""

    retries: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 60.0


def redact(text: str, secret: str | None) -> str:
    if secret:
        text = text.replace(secret, "[redacted]")
    return text


def retry_after(headers: httpx.Headers) -> float | None:
    """The delay a response asks for: `retry-after-ms` (OpenAI), else `Retry-After` as seconds
    or as an HTTP date."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, float(when.timestamp()) - time.time())


def _api_message(response: httpx.Response) -> str:
    """The error message inside an API's error body (OpenAI and Anthropic nest it the same)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:500]
        if isinstance(error, str):
            return error[:500]
    return json.dumps(body)[:500]


class Transport:
    """POSTs JSON for one provider; a new client per call unless one is given."""

    def __init__(
        self,
        name: str,
        *,
        secret: str | None,
        client: httpx.AsyncClient | None = None,
        sleep: Sleep = asyncio.sleep,
        policy: RetryPolicy | None = None,
    ) -> None:
        self.name = name
        self.secret = secret
        self.client = client
        self.sleep = sleep
        self.policy = policy or RetryPolicy()

    def _error(self, kind: ErrorKind, message: str) -> ProviderError:
        return ProviderError(kind, redact(message, self.secret))

    def _backoff(self, attempt: int) -> float:
        base = min(self.policy.max_backoff_s, self.policy.backoff_s * 2.0**attempt)
        # Jitter, so callers that failed together do not retry together.
        return base / 2 + random.random() * base / 2

    async def post(
        self,
        url: str,
        body: Mapping[str, Any],
        *,
        headers: Mapping[str, str],
        timeout_s: float | None,
    ) -> dict[str, Any]:
        """The JSON object the API answered with; `timeout_s` bounds each attempt."""
        timeout = DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s
        if self.client is not None:
            return await self._post(self.client, url, body, headers, timeout)
        # A client per call: no connection pool outlives its event loop, nothing to close.
        async with httpx.AsyncClient(trust_env=False) as client:
            return await self._post(client, url, body, headers, timeout)

    async def _post(
        self,
        client: httpx.AsyncClient,
        url: str,
        body: Mapping[str, Any],
        headers: Mapping[str, str],
        timeout_s: float,
    ) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                response = await client.post(
                    url, json=body, headers=dict(headers), timeout=timeout_s
                )
            except httpx.TransportError as e:
                if attempt >= self.policy.retries:
                    raise self._error(
                        "http",
                        f"{self.name}: POST {url} failed after {attempt + 1} attempts: "
                        f"{type(e).__name__}: {e}",
                    ) from None
                await self.sleep(self._backoff(attempt))
                attempt += 1
                continue
            if response.status_code < 300:
                return self._json(url, response)
            if response.status_code not in RETRY_STATUSES or attempt >= self.policy.retries:
                tries = f" after {attempt + 1} attempts" if attempt else ""
                raise self._error(
                    "http",
                    f"{self.name}: HTTP {response.status_code} from POST {url}{tries}: "
                    f"{_api_message(response)}",
                )
            asked = retry_after(response.headers)
            if asked is not None and asked > self.policy.max_retry_after_s:
                raise self._error(
                    "http",
                    f"{self.name}: HTTP {response.status_code} from POST {url}, retry asked "
                    f"after {asked:.0f} s: {_api_message(response)}",
                )
            await self.sleep(asked if asked is not None else self._backoff(attempt))
            attempt += 1

    def _json(self, url: str, response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            raise self._error(
                "protocol", f"{self.name}: POST {url} answered with something that is not JSON"
            ) from None
        if not isinstance(body, dict):
            raise self._error("protocol", f"{self.name}: POST {url} answered with a non-object")
        return body
