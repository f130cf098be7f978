"""The Starlette application: routes from `routes.ROUTES`, bearer auth, bodies checked
against their schemas, errors as JSON, request metrics, and the backend's lifecycle."""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from jsonschema import Draft202012Validator
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as StarletteRoute

from aobc import errorcodes as ec
from aobc.api.auth import LOCAL, Principal, roles_with
from aobc.api.backend import ControlPlane
from aobc.api.errors import ApiError, forbidden, unauthorized
from aobc.api.routes import ROUTES, Ctx, Route
from aobc.api.schemas import SCHEMAS
from aobc.api.settings import Settings
from aobc.diagnostics import Diagnostic
from aobc.source import JsonLoc

log = logging.getLogger("aobc.serve")


def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator({**SCHEMAS[name], "components": {"schemas": SCHEMAS}})


def _error_response(err: ApiError) -> JSONResponse:
    return JSONResponse(err.to_json(), status_code=err.status, headers=err.headers)


def authenticate(request: Request, settings: Settings) -> Principal:
    if settings.tokens is None:
        return LOCAL
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise unauthorized("no bearer token: send Authorization: Bearer <token>")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("the Authorization header must be: Bearer <token>")
    who = settings.tokens.lookup(token.strip())
    if who is None:
        raise unauthorized("the bearer token is not valid")
    return who


def authorize(who: Principal, route: Route) -> None:
    if route.permission is None:
        return
    perms = (route.permission,) if isinstance(route.permission, str) else route.permission
    if not any(who.can(p) for p in perms):
        allowed = sorted({r for p in perms for r in roles_with(p)})
        mine = ", ".join(sorted(who.roles))
        raise forbidden(f"a {mine} token may not do this (needs {' or '.join(allowed)})")


async def read_body(request: Request, route: Route, settings: Settings) -> Any:
    if route.body is None:
        return None
    raw = await request.body()
    if len(raw) > settings.max_body:
        raise ApiError(413, "bad-request", f"the body is over {settings.max_body} bytes")
    if not raw.strip():
        raw = b"{}"
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ApiError(400, "bad-request", f"the body is not JSON: {err}") from None
    bad = bad_text(body)
    if bad is not None:
        where, why = bad
        diag = Diagnostic.error(ec.BAD_REQUEST, why, JsonLoc("<request>", where))
        raise ApiError(422, "bad-request", f"the body at {where or '/'}: {why}", [diag])
    errors = sorted(_validator(route.body).iter_errors(body), key=lambda e: list(e.path))
    if errors:
        diags = [
            Diagnostic.error(
                ec.BAD_REQUEST,
                e.message,
                JsonLoc("<request>", "".join(f"/{p}" for p in e.absolute_path)),
            )
            for e in errors[:20]
        ]
        raise ApiError(
            422, "bad-request", f"the body does not fit {route.body}: {diags[0].message}", diags
        )
    return body


def bad_text(value: Any, where: str = "") -> tuple[str, str] | None:
    """(JSON pointer, reason) of the first string in `value` (keys too) that no store can hold:
    one with a NUL character (PostgreSQL text refuses it) or a lone surrogate (not UTF-8)."""
    if isinstance(value, str):
        if "\x00" in value:
            return where, "text may not contain NUL characters"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return where, "text must be valid Unicode (a lone surrogate)"
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            found = bad_text(k, where) or bad_text(v, f"{where}/{k}")
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = bad_text(v, f"{where}/{i}")
            if found is not None:
                return found
    return None


def check_params(request: Request, route: Route) -> None:
    """Query and header parameters against their declared schemas: 400 when one does not fit.

    Unknown query parameters and unknown enum values are refused rather than ignored: a
    mistyped filter (`?stauts=failed`) must not answer with everything, unfiltered.
    """
    for name, raw in [*request.path_params.items(), *request.query_params.items()]:
        bad = bad_text(raw)
        if bad is not None:
            raise ApiError(400, "bad-request", f"{name}: {bad[1]}")
    known = {p.name for p in route.params if p.where == "query"}
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        expected = ", ".join(sorted(known)) or "none"
        raise ApiError(
            400, "bad-request", f'unknown query parameter "{unknown[0]}" (expected: {expected})'
        )
    for p in route.params:
        source = request.query_params if p.where == "query" else request.headers
        raw = source.get(p.name)
        if raw is None:
            continue
        value: Any = raw
        if p.schema.get("type") == "integer":
            try:
                value = int(raw)
            except ValueError:
                raise ApiError(400, "bad-request", f"{p.name} must be an integer") from None
        error = next(Draft202012Validator(p.schema).iter_errors(value), None)
        if error is not None:
            raise ApiError(400, "bad-request", f"{p.name}: {error.message}")


def endpoint(route: Route, cp: ControlPlane, settings: Settings) -> Any:
    async def serve(request: Request) -> Response:
        began = time.perf_counter()
        status = 500
        try:
            who = LOCAL if route.permission is None else authenticate(request, settings)
            authorize(who, route)
            check_params(request, route)
            body = await read_body(request, route, settings)
            response = await route.handler(Ctx(request, who, body, cp, settings))
            status = response.status_code if hasattr(response, "status_code") else 200
            return response
        except ApiError as err:
            status = err.status
            return _error_response(err)
        except Exception:  # a bug: say so with an id to find it in the log, never a traceback
            crash = uuid.uuid4().hex[:12]
            log.exception("request %s %s failed (crash id %s)", route.method, route.path, crash)
            return _error_response(
                ApiError(500, "internal-error", f"the server failed (crash id {crash})")
            )
        finally:
            cp.metrics.requests.labels(route.method, route.path, str(status)).inc()
            cp.metrics.request_seconds.labels(route.path).observe(time.perf_counter() - began)

    serve.__name__ = route.handler.__name__
    return serve


def _by_method(handlers: dict[str, Any]) -> Any:
    async def serve(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        response: Response = await handlers[method](request)
        return response

    serve.__name__ = "_".join(h.__name__ for h in handlers.values())
    return serve


def _starlette_path(path: str) -> str:
    # Sub-workflow runs have ids like "r-1/review": let {run_id} hold a slash.
    return path.replace("{run_id}", "{run_id:path}")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "bad-request")
    message = "no such endpoint" if exc.status_code == 404 else str(exc.detail).lower()
    # A 405 carries the router's `Allow` header (RFC 9110 requires it).
    headers = dict(exc.headers) if exc.headers else None
    return _error_response(ApiError(exc.status_code, code, message, headers=headers))


def create_app(cp: ControlPlane, settings: Settings) -> Starlette:
    # Longer paths first, so "/runs/{id}/events" wins over "/runs/{id}" (whose id may hold "/").
    ordered = sorted(ROUTES, key=lambda r: -r.path.count("/"))
    # One Starlette route per path with every method it serves, so that a 405's `Allow`
    # header lists all of them.
    by_path: dict[str, dict[str, Any]] = {}
    for r in ordered:
        by_path.setdefault(r.path, {})[r.method] = endpoint(r, cp, settings)
    routes = [
        StarletteRoute(_starlette_path(path), _by_method(handlers), methods=list(handlers))
        for path, handlers in by_path.items()
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await cp.open()
        try:
            yield
        finally:
            await cp.close()

    return Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_error}
    )
