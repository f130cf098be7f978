"""The interface between the HTTP API and whatever runs the workflows.

`ControlPlane` is everything the API asks of a backend. `EmbeddedControlPlane`
(`embedded.py`) implements it over the embedded runtime: SQLite event log, local CAS, runs
driven in the server's own event loop. A distributed implementation (Postgres, Kafka, S3,
Redis) implements the same methods and the API, its auth, its OpenAPI spec and the `aob`
CLI work unchanged.

Conventions every implementation keeps:

- Methods take the caller (`Principal`) and enforce what depends on data: namespaces
  (a run in a namespace the token does not see is "not found"), ticket groups, agent
  budgets. Roles are checked by the API before the call.
- Results are JSON-ready dicts in the shapes the OpenAPI spec declares (`schemas.py`).
- Refusals are `ApiError`s (404, 409, 422 with diagnostics, 403); nothing else escapes.
- Event ids are the run log's `seq`: 1, 2, 3... with no gaps, so `after` means "every
  event with a greater seq", which is what SSE `Last-Event-ID` resume needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from aobc.api.auth import Principal
    from aobc.api.metrics import Metrics
    from aobc.runtime.stores.base import Event

PRIORITIES = ("high", "medium", "low")


@dataclass(frozen=True, slots=True)
class WorkflowSource:
    """A workflow as a client sends it: source text, a JSON document, or a compiled IR."""

    source: str | None = None
    filename: str | None = None  # its suffix (.aob / .json) picks the form
    document: dict[str, Any] | None = None
    ir: bytes | None = None  # a .aobir file's bytes
    opt_level: str = "O1"


@dataclass(frozen=True, slots=True)
class StartRequest:
    namespace: str = "default"
    workflow: str | None = None  # a name, resolved with `tag`
    tag: str = "main"
    hash: str | None = None  # or an artifact hash, as deployed
    inputs: dict[str, Any] = field(default_factory=dict)
    priority: str = "medium"
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class RunFilter:
    namespace: str | None = None
    status: str | None = None
    workflow: str | None = None
    parent: str | None = None
    limit: int = 50


class Subscription(Protocol):
    """One client's live view of a run's events."""

    @property
    def dropped(self) -> str | None:
        """Why the backend dropped this subscriber, once it has."""
        ...

    async def next(self, timeout: float) -> list[Event] | None:
        """The next events in seq order (never a gap, never a repeat), [] once dropped, or
        None when `timeout` seconds pass with nothing new (time for a heartbeat)."""
        ...

    def close(self) -> None: ...


class ControlPlane(Protocol):
    metrics: Metrics

    async def open(self) -> None:
        """Start: resume the runs left running, start background work."""
        ...

    async def close(self) -> None:
        """Stop driving runs, leaving each resumable (not cancelled), and release stores."""
        ...

    def readiness(self) -> dict[str, Any]:
        """{"ready": bool, ...details}."""
        ...

    # --- workflows --------------------------------------------------------------------
    async def validate(self, who: Principal, src: WorkflowSource) -> dict[str, Any]: ...

    async def deploy(
        self, who: Principal, src: WorkflowSource, namespace: str, tags: list[str]
    ) -> tuple[dict[str, Any], bool]: ...

    async def list_workflows(self, who: Principal) -> list[dict[str, Any]]: ...

    async def get_workflow(self, who: Principal, namespace: str, name: str) -> dict[str, Any]: ...

    async def set_tag(
        self, who: Principal, namespace: str, name: str, tag: str, digest: str
    ) -> dict[str, Any]: ...

    # --- runs ---------------------------------------------------------------------------
    async def start_run(self, who: Principal, req: StartRequest) -> tuple[dict[str, Any], bool]: ...

    async def get_run(self, who: Principal, run_id: str) -> dict[str, Any]: ...

    async def list_runs(self, who: Principal, f: RunFilter) -> list[dict[str, Any]]: ...

    async def cancel_run(self, who: Principal, run_id: str, reason: str) -> dict[str, Any]: ...

    async def replay_run(
        self, who: Principal, run_id: str, from_node: str, mode: str, priority: str
    ) -> dict[str, Any]: ...

    async def timeline(
        self, who: Principal, run_id: str, after: int, limit: int, node: str | None
    ) -> list[dict[str, Any]]: ...

    async def run_document(self, who: Principal, run_id: str) -> dict[str, Any]: ...

    # --- patches ------------------------------------------------------------------------
    async def propose_patch(self, who: Principal, run_id: str, raw: Any) -> dict[str, Any]: ...

    async def list_patches(
        self, who: Principal, run_id: str | None, status: str | None
    ) -> list[dict[str, Any]]: ...

    async def get_patch(self, who: Principal, patch_id: str) -> dict[str, Any]: ...

    async def decide_patch(
        self, who: Principal, patch_id: str, decision: str, reason: str
    ) -> dict[str, Any]: ...

    # --- approvals ----------------------------------------------------------------------
    async def list_tickets(self, who: Principal) -> list[dict[str, Any]]: ...

    async def decide_ticket(
        self, who: Principal, ticket: str, decision: str, reason: str
    ) -> dict[str, Any]: ...

    # --- events -------------------------------------------------------------------------
    async def subscribe(self, who: Principal, run_id: str, after: int) -> Subscription: ...
