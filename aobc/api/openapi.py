"""The OpenAPI 3.1 document, built from the route table (`routes.ROUTES`)."""

from __future__ import annotations

import functools
import re
from typing import Any

from aobc import __version__
from aobc.api.auth import roles_with
from aobc.api.routes import ROUTES, Route
from aobc.api.schemas import SCHEMAS, ref

_PARAM = re.compile(r"{([a-z_]+)}")

_DESCRIPTION = """The aobc control plane: deploy workflows, start and watch runs, decide
approvals and live patches. Authenticate with `Authorization: Bearer <token>`; each
operation says which roles may call it. Errors are `{"error": {...}}` with a stable code
and, for refused content (422), the diagnostics. See docs/api.md."""


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ref("Error")}}}


_ERRORS = {
    400: "Malformed request (not JSON, bad parameter)",
    401: "No bearer token, or an unknown one",
    403: "The token's role or namespace does not allow this",
    404: "Not found (or in a namespace the token does not see)",
    409: "Conflicts with the current state (already finished, already decided)",
    422: "Refused content, with diagnostics (invalid workflow, patch, inputs)",
    503: "Not ready",
}


def _responses(r: Route) -> dict[str, Any]:
    status, schema = r.ok
    body: dict[str, Any] = {}
    if r.content == "application/json":
        body = {"application/json": {"schema": ref(schema) if schema else {"type": "object"}}}
    else:
        body = {r.content: {"schema": {"type": "string"}}}
    out: dict[str, Any] = {str(status): {"description": "OK", "content": body}}
    for extra in r.also:
        out[str(extra)] = {"description": "OK (already there)", "content": body}
    codes = set(r.errors)
    if r.permission is not None:
        codes |= {401, 403}
    if r.body is not None:
        codes |= {400, 422}
    if r.params:
        codes.add(400)
    for code in sorted(codes):
        out[str(code)] = _error(_ERRORS[code])
    return out


def _operation(r: Route) -> dict[str, Any]:
    perms = (r.permission,) if isinstance(r.permission, str) else r.permission or ()
    roles = sorted({role for p in perms for role in roles_with(p)})
    if "read-run" in perms:
        roles = sorted(set(roles) | set(roles_with("read")))
    op: dict[str, Any] = {
        "operationId": r.handler.__name__,
        "summary": r.summary,
        "tags": [r.tag],
        "responses": _responses(r),
    }
    if roles:
        op["description"] = "Roles: " + ", ".join(roles) + "."
    else:
        op["security"] = []
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PARAM.findall(r.path)
    ]
    params += [
        {
            "name": p.name,
            "in": p.where,
            "required": p.required,
            "schema": p.schema,
            **({"description": p.description} if p.description else {}),
        }
        for p in r.params
    ]
    if params:
        op["parameters"] = params
    if r.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": ref(r.body)}},
        }
    return op


@functools.cache
def spec() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for r in ROUTES:
        paths.setdefault(r.path, {})[r.method.lower()] = _operation(r)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "aobc control plane",
            "version": __version__,
            "description": _DESCRIPTION,
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
