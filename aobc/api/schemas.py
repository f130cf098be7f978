"""JSON Schemas of the API's request and response bodies (OpenAPI 3.1 components).

Requests are validated against these before a handler runs; responses are what
`views.py` builds, and the schemathesis test checks every response against them.
"""

from __future__ import annotations

from typing import Any, Final

S = dict[str, Any]


def ref(name: str) -> S:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: S) -> S:
    return {"anyOf": [schema, {"type": "null"}]}


STR: Final[S] = {"type": "string"}
NUM: Final[S] = {"type": "number"}
INT: Final[S] = {"type": "integer"}
BOOL: Final[S] = {"type": "boolean"}
OBJ: Final[S] = {"type": "object"}
ANY: Final[S] = {}
PRIORITY: Final[S] = {"type": "string", "enum": ["high", "medium", "low"], "default": "medium"}
NAMESPACE: Final[S] = {"type": "string", "default": "default", "minLength": 1, "maxLength": 200}
REASON: Final[S] = {"type": "string", "maxLength": 10_000, "default": ""}


def obj(props: S, required: tuple[str, ...] = (), *, closed: bool = False) -> S:
    out: S = {"type": "object", "properties": props}
    if required:
        out["required"] = list(required)
    if closed:
        out["additionalProperties"] = False
    return out


_DIAGNOSTIC = obj(
    {
        "file": nullable(STR),
        "line": nullable(INT),
        "column": nullable(INT),
        "end_line": nullable(INT),
        "end_column": nullable(INT),
        "pointer": nullable(STR),
        "severity": {"type": "string", "enum": ["error", "warning", "note"]},
        "code": nullable(STR),
        "message": STR,
        "notes": {"type": "array", "items": ref("Diagnostic")},
    },
    ("severity", "message"),
)

_WORKFLOW_SOURCE: S = {
    "source": {"type": "string", "description": "DSL or JSON text", "maxLength": 16_777_216},
    "filename": {"type": "string", "description": "its suffix (.aob, .json) picks the form"},
    "document": {"type": "object", "description": "the workflow as a JSON document"},
    "ir": {"type": "string", "description": "a compiled .aobir file, base64"},
    "opt_level": {"type": "string", "enum": ["O0", "O1", "O2"], "default": "O1"},
}

#: A workflow is sent in exactly one form.
_ONE_FORM: Final[S] = {
    "oneOf": [{"required": ["source"]}, {"required": ["document"]}, {"required": ["ir"]}]
}

_RUN_SUMMARY: S = {
    "id": STR,
    "namespace": STR,
    "workflow": STR,
    "status": {
        "type": "string",
        "enum": ["queued", "running", "waiting", "succeeded", "failed", "cancelled"],
    },
    "created": NUM,
    "updated": NUM,
    "parent": nullable(STR),
    "idempotency_key": nullable(STR),
    "priority": STR,
    "started_by": nullable(STR),
    "deployment": nullable(STR),
}

_TICKET: S = {
    "ticket": STR,
    "run": STR,
    "namespace": STR,
    "workflow": STR,
    "node": STR,
    "level": INT,
    "approvers": {"type": "array", "items": STR},
    "deadline": nullable(NUM),
    "message": nullable(STR),
    "status": {"type": "string", "enum": ["open", "approved", "rejected"]},
    "decision": nullable(STR),
    "by": nullable(STR),
    "reason": nullable(STR),
    "timed_out": BOOL,
}

_PATCH: S = {
    "id": STR,
    "run": nullable(STR),
    "status": {
        "type": "string",
        "enum": ["proposed", "pending", "approved", "rejected", "applied", "refused", "expired"],
        "description": "pending: held by the review policy until an approver decides",
    },
    "author_kind": nullable(STR),
    "author": nullable(STR),
    "reason": nullable(STR),
    "base": nullable(STR),
    "operations": {"type": "array"},
    "detail": OBJ,
    "created": nullable(NUM),
    "updated": nullable(NUM),
    "review": nullable(STR),
}

_EVENT = obj(
    {"run": STR, "seq": INT, "type": STR, "time": NUM},
    ("run", "seq", "type", "time"),
)

SCHEMAS: Final[dict[str, S]] = {
    "Diagnostic": _DIAGNOSTIC,
    "Error": obj(
        {
            "error": obj(
                {
                    "status": INT,
                    "code": STR,
                    "message": STR,
                    "diagnostics": {"type": "array", "items": ref("Diagnostic")},
                },
                ("status", "code", "message", "diagnostics"),
            )
        },
        ("error",),
    ),
    "WorkflowSource": {**obj(_WORKFLOW_SOURCE, closed=True), **_ONE_FORM},
    "Deploy": obj(
        {
            **_WORKFLOW_SOURCE,
            "namespace": NAMESPACE,
            "tags": {
                "type": "array",
                "items": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"},
                "maxItems": 32,
            },
        },
        closed=True,
    )
    | _ONE_FORM,
    "Validation": obj(
        {
            "ok": BOOL,
            "diagnostics": {"type": "array", "items": ref("Diagnostic")},
            "workflow": nullable(
                obj({"name": STR, "hash": STR, "nodes": INT, "inputs": {"type": "array"}})
            ),
        },
        ("ok", "diagnostics", "workflow"),
    ),
    "Deployment": obj(
        {
            "namespace": STR,
            "name": STR,
            "hash": STR,
            "workflow_hash": STR,
            "nodes": INT,
            "source": STR,
            "created": NUM,
            "by": STR,
            "tags": {"type": "object", "additionalProperties": STR},
            "warnings": {"type": "array", "items": ref("Diagnostic")},
        },
        ("namespace", "name", "hash", "tags"),
    ),
    "WorkflowList": obj(
        {
            "workflows": {
                "type": "array",
                "items": obj(
                    {
                        "namespace": STR,
                        "name": STR,
                        "deployments": INT,
                        "latest": STR,
                        "updated": NUM,
                        "tags": {"type": "object", "additionalProperties": STR},
                    },
                    ("namespace", "name", "latest", "tags"),
                ),
            }
        },
        ("workflows",),
    ),
    "Workflow": obj(
        {
            "namespace": STR,
            "name": STR,
            "tags": {"type": "object", "additionalProperties": STR},
            "deployments": {"type": "array", "items": ref("Deployment")},
        },
        ("namespace", "name", "tags", "deployments"),
    ),
    "SetTag": obj(
        {"hash": {"type": "string", "minLength": 1}, "namespace": NAMESPACE}, ("hash",), closed=True
    ),
    "Tag": obj({"namespace": STR, "name": STR, "tag": STR, "hash": STR}),
    "StartRun": obj(
        {
            "workflow": {"type": "string", "description": "a deployed workflow's name"},
            "tag": {"type": "string", "default": "main"},
            "hash": {"type": "string", "description": "or a deployment's artifact hash"},
            "inputs": {"type": "object", "default": {}},
            "priority": PRIORITY,
            "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 200},
            "namespace": NAMESPACE,
        },
        closed=True,
    )
    | {"anyOf": [{"required": ["workflow"]}, {"required": ["hash"]}]},
    "RunSummary": obj(_RUN_SUMMARY, ("id", "namespace", "workflow", "status")),
    "RunList": obj({"runs": {"type": "array", "items": ref("RunSummary")}}, ("runs",)),
    "Run": obj(
        {
            **_RUN_SUMMARY,
            "mode": STR,
            "version": STR,
            "ir": STR,
            "start_ir": STR,
            "inputs": OBJ,
            "nodes": obj(
                {
                    "done": {"type": "object", "additionalProperties": nullable(STR)},
                    "order": {"type": "array", "items": STR},
                    "running": {"type": "array", "items": STR},
                    "failed": {"type": "object", "additionalProperties": STR},
                }
            ),
            "tickets": {"type": "array", "items": ref("Ticket")},
            "patches": {"type": "array", "items": OBJ},
            "held": {"type": "array", "items": OBJ},
            "outputs": ANY,
            "error": nullable(STR),
            "cancel": nullable(OBJ),
            "last_seq": INT,
            "replay": nullable(
                obj({"of": STR, "from": STR, "mode": STR, "divergence": {"type": "array"}})
            ),
        },
        ("id", "namespace", "workflow", "status", "version", "nodes", "last_seq"),
    ),
    "Cancel": obj({"reason": REASON}, closed=True),
    "Cancelled": obj(
        {"run": STR, "status": {"type": "string", "enum": ["cancelled", "cancelling"]}, "by": STR},
        ("run", "status", "by"),
    ),
    "Replay": obj(
        {
            "from": {"type": "string", "minLength": 1},
            "mode": {"type": "string", "enum": ["freeze", "fresh"], "default": "freeze"},
            "priority": PRIORITY,
        },
        ("from",),
        closed=True,
    ),
    "Event": _EVENT,
    "Timeline": obj(
        {"events": {"type": "array", "items": ref("Event")}, "next": INT}, ("events", "next")
    ),
    "RunDocument": obj({"run": STR, "version": STR, "document": OBJ}, ("run", "version")),
    "ProposePatch": {
        "description": "RFC 6902 operations, bare or in an envelope; author fields are set "
        "from the token",
        "anyOf": [
            {"type": "array", "items": OBJ},
            obj(
                {
                    "operations": {"type": "array", "items": OBJ},
                    "ops": {"type": "array", "items": OBJ},
                    "reason": STR,
                    "base": STR,
                    "created_at": STR,
                    "author_kind": STR,
                    "author": STR,
                    "id": STR,
                }
            ),
        ],
    },
    "Patch": obj(_PATCH, ("id", "status", "operations")),
    "PatchList": obj({"patches": {"type": "array", "items": ref("Patch")}}, ("patches",)),
    "Decision": obj({"reason": REASON}, closed=True),
    "TicketDecision": obj(
        {"decision": {"type": "string", "enum": ["approve", "reject"]}, "reason": REASON},
        ("decision",),
        closed=True,
    ),
    "Ticket": obj(_TICKET, ("ticket", "run", "node", "approvers", "status")),
    "TicketList": obj({"tickets": {"type": "array", "items": ref("Ticket")}}, ("tickets",)),
    "Health": obj({"status": STR}, ("status",)),
    "Ready": obj({"ready": BOOL}, ("ready",)),
}
