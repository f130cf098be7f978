"""Every endpoint of the API, once: path, method, permission, schemas, and handler.

The Starlette routes (`app.py`) and the OpenAPI document (`openapi.py`) are both built
from `ROUTES`, so the spec cannot drift from what the server serves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from starlette.responses import JSONResponse, Response

from aobc.api.backend import RunFilter, StartRequest, WorkflowSource
from aobc.api.errors import ApiError

if TYPE_CHECKING:
    from starlette.requests import Request

    from aobc.api.auth import Principal
    from aobc.api.backend import ControlPlane
    from aobc.api.settings import Settings


@dataclass
class Ctx:
    """What a handler gets: the request, its caller, its parsed body, the backend."""

    request: Request
    who: Principal
    body: Any
    cp: ControlPlane
    settings: Settings

    def path(self, name: str) -> str:
        return str(self.request.path_params[name])

    def query(self, name: str, default: str | None = None) -> str | None:
        return self.request.query_params.get(name, default)

    def int_query(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.request.query_params.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ApiError(400, "bad-request", f"{name} must be an integer") from None
        if not low <= value <= high:
            raise ApiError(400, "bad-request", f"{name} must be between {low} and {high}")
        return value


Handler = Callable[[Ctx], Awaitable[Response]]

MAX_SEQ: Final = 2**62  # the largest event seq a client may name (`after`, Last-Event-ID)


@dataclass(frozen=True)
class Param:
    name: str
    schema: dict[str, Any]
    description: str = ""
    where: str = "query"  # query | header
    required: bool = False


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # OpenAPI template; {run_id} may hold "/" (sub-workflow runs)
    handler: Handler
    permission: str | tuple[str, ...] | None  # None: no token needed
    summary: str
    tag: str
    body: str | None = None  # schema name
    ok: tuple[int, str | None] = (200, None)  # status, schema name
    also: tuple[int, ...] = ()  # other success statuses with the same schema
    errors: tuple[int, ...] = (401, 403, 404)
    params: tuple[Param, ...] = ()
    content: str = "application/json"
    extra: dict[str, Any] = field(default_factory=dict)


def ok(value: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(value, status_code=status)


def _source(body: dict[str, Any]) -> WorkflowSource:
    from aobc.api.embedded import decode_ir

    given = [k for k in ("source", "document", "ir") if k in body]
    if len(given) != 1:
        raise ApiError(422, "invalid", 'give exactly one of "source", "document" or "ir"')
    return WorkflowSource(
        source=body.get("source"),
        filename=body.get("filename"),
        document=body.get("document"),
        ir=decode_ir(body["ir"]) if "ir" in body else None,
        opt_level=body.get("opt_level", "O1"),
    )


# --- operations ------------------------------------------------------------------------


async def healthz(c: Ctx) -> Response:
    return ok({"status": "ok"})


async def readyz(c: Ctx) -> Response:
    state = c.cp.readiness()
    return ok(state, 200 if state.get("ready") else 503)


async def metrics(c: Ctx) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(c.cp.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def openapi(c: Ctx) -> Response:
    from aobc.api.openapi import spec

    return ok(spec())


# --- workflows ---------------------------------------------------------------------------


async def validate_workflow(c: Ctx) -> Response:
    return ok(await c.cp.validate(c.who, _source(c.body)))


async def deploy_workflow(c: Ctx) -> Response:
    tags = list(dict.fromkeys(c.body.get("tags", [])))
    namespace = c.body.get("namespace", "default")
    found, created = await c.cp.deploy(c.who, _source(c.body), namespace, tags)
    return ok(found, 201 if created else 200)


async def list_workflows(c: Ctx) -> Response:
    return ok({"workflows": await c.cp.list_workflows(c.who)})


async def get_workflow(c: Ctx) -> Response:
    ns = c.query("namespace") or "default"
    return ok(await c.cp.get_workflow(c.who, ns, c.path("name")))


async def set_tag(c: Ctx) -> Response:
    ns = c.body.get("namespace", "default")
    return ok(await c.cp.set_tag(c.who, ns, c.path("name"), c.path("tag"), c.body["hash"]))


# --- runs -----------------------------------------------------------------------------------


async def start_run(c: Ctx) -> Response:
    b = c.body
    req = StartRequest(
        namespace=b.get("namespace", "default"),
        workflow=b.get("workflow"),
        tag=b.get("tag", "main"),
        hash=b.get("hash"),
        inputs=b.get("inputs", {}),
        priority=b.get("priority", "medium"),
        idempotency_key=b.get("idempotency_key"),
    )
    run, created = await c.cp.start_run(c.who, req)
    return ok(run, 201 if created else 200)


async def list_runs(c: Ctx) -> Response:
    f = RunFilter(
        namespace=c.query("namespace"),
        status=c.query("status"),
        workflow=c.query("workflow"),
        parent=c.query("parent"),
        limit=c.int_query("limit", 50, 1, 1000),
    )
    return ok({"runs": await c.cp.list_runs(c.who, f)})


async def get_run(c: Ctx) -> Response:
    return ok(await c.cp.get_run(c.who, c.path("run_id")))


async def cancel_run(c: Ctx) -> Response:
    out = await c.cp.cancel_run(c.who, c.path("run_id"), c.body.get("reason", ""))
    return ok(out, 202)


async def replay_run(c: Ctx) -> Response:
    b = c.body
    run = await c.cp.replay_run(
        c.who, c.path("run_id"), b["from"], b.get("mode", "freeze"), b.get("priority", "medium")
    )
    return ok(run, 201)


async def timeline(c: Ctx) -> Response:
    after = c.int_query("after", 0, 0, MAX_SEQ)
    limit = c.int_query("limit", 1000, 1, 10_000)
    events = await c.cp.timeline(c.who, c.path("run_id"), after, limit, c.query("node"))
    nxt = events[-1]["seq"] if events else after
    return ok({"events": events, "next": nxt})


async def run_document(c: Ctx) -> Response:
    return ok(await c.cp.run_document(c.who, c.path("run_id")))


async def events(c: Ctx) -> Response:
    from aobc.api.sse import EventStream

    header = c.request.headers.get("last-event-id")
    after = c.int_query("after", 0, 0, MAX_SEQ)
    if header:
        try:
            after = max(int(header), 0)
        except ValueError:
            raise ApiError(400, "bad-request", "Last-Event-ID must be an event seq") from None
    run_id = c.path("run_id")
    sub = await c.cp.subscribe(c.who, run_id, after)
    s = c.settings
    return EventStream(  # type: ignore[return-value]
        sub,
        run_id=run_id,
        node=c.query("node"),
        heartbeat=s.heartbeat,
        stall=s.stall,
        metrics=c.cp.metrics,
    )


# --- patches ---------------------------------------------------------------------------------


async def propose_patch(c: Ctx) -> Response:
    return ok(await c.cp.propose_patch(c.who, c.path("run_id"), c.body), 202)


async def run_patches(c: Ctx) -> Response:
    return ok({"patches": await c.cp.list_patches(c.who, c.path("run_id"), c.query("status"))})


async def list_patches(c: Ctx) -> Response:
    return ok({"patches": await c.cp.list_patches(c.who, c.query("run"), c.query("status"))})


async def get_patch(c: Ctx) -> Response:
    return ok(await c.cp.get_patch(c.who, c.path("patch_id")))


async def approve_patch(c: Ctx) -> Response:
    reason = c.body.get("reason", "")
    return ok(await c.cp.decide_patch(c.who, c.path("patch_id"), "approve", reason))


async def reject_patch(c: Ctx) -> Response:
    reason = c.body.get("reason", "")
    return ok(await c.cp.decide_patch(c.who, c.path("patch_id"), "reject", reason))


# --- approvals -------------------------------------------------------------------------------


async def list_tickets(c: Ctx) -> Response:
    return ok({"tickets": await c.cp.list_tickets(c.who)})


async def decide_ticket(c: Ctx) -> Response:
    b = c.body
    return ok(await c.cp.decide_ticket(c.who, c.path("ticket"), b["decision"], b.get("reason", "")))


_STATUS = Param(
    "status",
    {
        "type": "string",
        "enum": ["queued", "running", "waiting", "succeeded", "failed", "cancelled"],
    },
)
_PATCH_STATUS = Param(
    "status",
    {
        "type": "string",
        "enum": ["proposed", "pending", "approved", "rejected", "applied", "refused", "expired"],
    },
)
_NODE = Param("node", {"type": "string"}, "only events about this node")
_AFTER = Param(
    "after", {"type": "integer", "minimum": 0, "maximum": MAX_SEQ}, "events with a greater seq"
)

ROUTES: list[Route] = [
    Route("GET", "/healthz", healthz, None, "Liveness", "operations", ok=(200, "Health"), errors=()),
    Route(
        "GET", "/readyz", readyz, None, "Readiness", "operations", ok=(200, "Ready"), errors=(503,)
    ),
    Route(
        "GET", "/metrics", metrics, None, "Prometheus metrics", "operations",
        errors=(), content="text/plain",
    ),
    Route("GET", "/openapi.json", openapi, None, "This document", "operations", errors=()),
    Route(
        "POST", "/workflows/validate", validate_workflow, "read", "Compile a workflow and report "
        "its diagnostics (nothing is stored)", "workflows", body="WorkflowSource",
        ok=(200, "Validation"), errors=(401, 403),
    ),
    Route(
        "POST", "/workflows", deploy_workflow, "deploy", "Deploy a workflow (source, JSON "
        "document or compiled .aobir) and point tags at it; 200 when already deployed",
        "workflows", body="Deploy", ok=(201, "Deployment"), also=(200,), errors=(401, 403),
    ),
    Route(
        "GET", "/workflows", list_workflows, "read", "Deployed workflows and their tags",
        "workflows", ok=(200, "WorkflowList"), errors=(401, 403),
    ),
    Route(
        "GET", "/workflows/{name}", get_workflow, "read", "A workflow's deployments and tags",
        "workflows", ok=(200, "Workflow"), params=(Param("namespace", {"type": "string"}),),
    ),
    Route(
        "PUT", "/workflows/{name}/tags/{tag}", set_tag, "deploy", "Point a tag at a deployment",
        "workflows", body="SetTag", ok=(200, "Tag"),
    ),
    Route(
        "POST", "/runs", start_run, "start", "Start a run of a tag or an artifact hash; a "
        "repeated idempotency key returns the first run (200)", "runs", body="StartRun",
        ok=(201, "Run"), also=(200,),
    ),
    Route(
        "GET", "/runs", list_runs, "read", "Runs, newest first", "runs", ok=(200, "RunList"),
        errors=(401, 403),
        params=(
            _STATUS,
            Param("workflow", {"type": "string"}),
            Param("namespace", {"type": "string"}),
            Param("parent", {"type": "string"}),
            Param("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
        ),
    ),
    Route("GET", "/runs/{run_id}", get_run, "read-run", "A run's state", "runs", ok=(200, "Run")),
    Route(
        "POST", "/runs/{run_id}/cancel", cancel_run, "cancel", "Cancel a run", "runs",
        body="Cancel", ok=(202, "Cancelled"), errors=(401, 403, 404, 409),
    ),
    Route(
        "POST", "/runs/{run_id}/replay", replay_run, "replay", "Replay a finished run from a "
        "node (freeze: only it and what depends on it re-run)", "runs", body="Replay",
        ok=(201, "Run"),
    ),
    Route(
        "GET", "/runs/{run_id}/timeline", timeline, "read", "A run's events, in order", "runs",
        ok=(200, "Timeline"),
        params=(_AFTER, Param("limit", {"type": "integer", "minimum": 1, "maximum": 10000}), _NODE),
    ),
    Route(
        "GET", "/runs/{run_id}/events", events, "read", "A run's events as they happen "
        "(Server-Sent Events; resume with Last-Event-ID)", "runs",
        content="text/event-stream",
        params=(
            _AFTER,
            _NODE,
            Param(
                "Last-Event-ID",
                {"type": "integer", "minimum": 0, "maximum": MAX_SEQ},
                "resume after this event (what a reconnecting EventSource sends)",
                where="header",
            ),
        ),
    ),
    Route(
        "GET", "/runs/{run_id}/workflow", run_document, "read-run", "The workflow document the "
        "run is on now (what a patch addresses)", "runs", ok=(200, "RunDocument"),
    ),
    Route(
        "POST", "/runs/{run_id}/patches", propose_patch, ("propose", "agent-propose"),
        "Propose a live patch; 422 with diagnostics when it is invalid (nothing changes)",
        "patches", body="ProposePatch", ok=(202, "Patch"), errors=(401, 403, 404, 409),
    ),
    Route(
        "GET", "/runs/{run_id}/patches", run_patches, "read", "A run's patches", "patches",
        ok=(200, "PatchList"), params=(_PATCH_STATUS,),
    ),
    Route(
        "GET", "/patches", list_patches, "read", "Patches of every run", "patches",
        ok=(200, "PatchList"), params=(Param("run", {"type": "string"}), _PATCH_STATUS),
    ),
    Route(
        "GET", "/patches/{patch_id}", get_patch, "read", "A patch (id or a unique prefix of "
        "8+ hex digits)", "patches", ok=(200, "Patch"),
    ),
    Route(
        "POST", "/patches/{patch_id}/approve", approve_patch, "decide", "Approve a held patch; "
        "the run applies it", "patches", body="Decision", ok=(200, "Patch"),
        errors=(401, 403, 404, 409),
    ),
    Route(
        "POST", "/patches/{patch_id}/reject", reject_patch, "decide", "Reject a held patch",
        "patches", body="Decision", ok=(200, "Patch"), errors=(401, 403, 404, 409),
    ),
    Route(
        "GET", "/approvals", list_tickets, "read", "Open approval tickets", "approvals",
        ok=(200, "TicketList"), errors=(401, 403),
    ),
    Route(
        "POST", "/approvals/{ticket}", decide_ticket, "decide", "Approve or reject a ticket",
        "approvals", body="TicketDecision", ok=(200, "Ticket"), errors=(401, 403, 404, 409),
    ),
]  # fmt: skip
