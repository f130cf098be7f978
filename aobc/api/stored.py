"""`StoreControlPlane`: the API's backend logic over any `EventLog` and `CAS`.

Everything here reads and writes only through the store interfaces (`aobc.runtime.stores.base`)
and the runtime's own commands (`aobc.runtime.commands`: cancel, decide, propose,
decide_patch), so it serves the embedded runtime (`embedded.py`: SQLite, runs driven in this
process) and the distributed one (`distributed.py`: Postgres/S3, runs driven by
coordinators) alike. What differs is left to the subclass: who drives a run once it is
created or a decision is appended (`_kick`), what "queued" means (`_queued`), how a cancel
reaches the driver (`_cancel`), and where deployments are kept (`registry`).
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from typing import Any, Protocol

from aobc import errorcodes as ec
from aobc.api import views
from aobc.api.auth import LOCAL, Principal
from aobc.api.backend import PRIORITIES, RunFilter, StartRequest, WorkflowSource
from aobc.api.errors import ApiError, conflict, forbidden, invalid, not_found
from aobc.api.hub import Hub, Subscriber
from aobc.api.metrics import Metrics
from aobc.diagnostics import Diagnostic
from aobc.errors import AobcError
from aobc.policy import Policy
from aobc.runtime.engine import Engine, Stores
from aobc.runtime.review import ReviewPolicy
from aobc.runtime.state import RunState
from aobc.runtime.stores.base import Event, EventLog
from aobc.source import JsonLoc

ACTIVE = ("running", "waiting")
STATE_CACHE = 2048
CHUNK = 256  # events per SSE write: flow control gets a say between writes


class Deployments(Protocol):
    """Deployed workflows and their tags (`registry.Registry`, `pgregistry.PostgresRegistry`)."""

    def close(self) -> None: ...

    def deploy(
        self,
        namespace: str,
        digest: str,
        name: str,
        workflow_hash: str,
        nodes: int,
        source: str,
        by: str,
        tags: list[str],
    ) -> tuple[dict[str, Any], bool]: ...

    def set_tag(self, namespace: str, name: str, tag: str, digest: str, by: str) -> None: ...

    def get(self, namespace: str, digest: str) -> dict[str, Any] | None: ...

    def tags_of(self, namespace: str, name: str, digest: str | None = None) -> dict[str, str]: ...

    def resolve(self, namespace: str, name: str, tag: str) -> str | None: ...

    def workflows(self, namespaces: list[str] | None) -> list[dict[str, Any]]: ...

    def deployments(self, namespace: str, name: str, limit: int = 100) -> list[dict[str, Any]]: ...


class LogSubscription:
    """The backlog from the log, page by page, then the live buffer; no gap, no repeat."""

    def __init__(self, cp: StoreControlPlane, sub: Subscriber, after: int) -> None:
        self.cp = cp
        self.sub = sub
        self.last = after

    @property
    def dropped(self) -> str | None:
        return self.sub.dropped

    async def next(self, timeout: float) -> list[Event] | None:
        if self.sub.dropped is not None:
            return []
        if not self.sub.live:
            page = self.cp.events.read(self.sub.run_id, after=self.last, limit=512)
            if page:
                self.last = page[-1].seq
            if self.last >= self.sub.channel.cursor:
                # Caught up: from here on the channel hands over every event after its cursor
                # (no await between this check and going live, so nothing slips between).
                self.sub.live = True
            if page:
                return page
        if not await self.sub.wait(timeout):
            return None
        if self.sub.dropped is not None:
            return []
        fresh = [e for e in self.sub.take(CHUNK) if e.seq > self.last]
        if fresh:
            self.last = fresh[-1].seq
        return fresh

    def close(self) -> None:
        self.cp.hub.unsubscribe(self.sub)
        self.cp.metrics.subscribers.set(self.cp.hub.subscriber_count)


class StoreControlPlane:
    """The `ControlPlane` methods, over `self.events` and `self.engine`; see the module doc.

    A subclass sets the attributes below in its `__init__` and implements the hooks."""

    events: EventLog
    stores: Stores
    engine: Engine
    registry: Deployments
    metrics: Metrics
    hub: Hub
    policy: Policy
    review: ReviewPolicy
    sse_buffer: int

    def _init_state(self) -> None:
        self.states: OrderedDict[str, RunState] = OrderedDict()
        self.tickets: dict[str, str] = {}  # ticket -> run, for tickets seen

    # --- hooks --------------------------------------------------------------------------

    def _kick(self, run_id: str, priority: str = "medium") -> None:
        """`run_id` was created, or something its driver acts on was appended."""
        raise NotImplementedError

    def _queued(self, run_id: str) -> bool:
        """Whether the run waits for a driver (shown as "queued")."""
        return False

    def _queued_runs(self) -> list[str]:
        return []

    def _cancel(self, who: Principal, run_id: str, reason: str) -> str:
        """Ask the run to stop; "cancelled" or "cancelling" (its driver will stop it)."""
        raise NotImplementedError

    # --- store reads ----------------------------------------------------------------------

    def _active_runs(self) -> list[Any]:
        out = []
        for status in ACTIVE:
            for record in self.events.list_runs(status=status, limit=100_000):
                if "/" not in record.run_id:  # sub-workflow runs are driven by their parent
                    out.append(record)
        return out

    def _on_event(self, e: Event) -> None:
        """An event of some run, seen once, in seq order (from the engine, or a log tail)."""
        self.hub.offer(e)
        self.metrics.observe(e)
        st = self.states.get(e.run_id)
        if st is not None and e.seq == st.last_seq + 1:
            st.apply_event(e)
        if e.type == "ticket.opened":
            self.tickets[e.data["ticket"]] = e.run_id

    def _on_drop(self, sub: Subscriber) -> None:
        self.metrics.sse_dropped.inc()

    def _workflow_of(self, run_id: str) -> str:
        record = self.events.get_run(run_id)
        return record.workflow if record is not None else "unknown"

    # --- run states -------------------------------------------------------------------

    def state(self, run_id: str) -> RunState | None:
        """The run's folded state, kept up to date incrementally (None: no such run)."""
        st = self.states.get(run_id)
        if st is None:
            events = self.events.read(run_id)
            if not events:
                return None
            st = RunState.fold(run_id, events)
            self.states[run_id] = st
            if len(self.states) > STATE_CACHE:
                self.states.popitem(last=False)
        else:
            self.states.move_to_end(run_id)
            for e in self.events.read(run_id, after=st.last_seq):
                st.apply_event(e)
        return st

    def _run(self, who: Principal, run_id: str) -> tuple[Any, RunState]:
        record = self.events.get_run(run_id)
        st = self.state(run_id) if record is not None else None
        if record is None or st is None or not who.sees(record.namespace):
            raise not_found(f"no run {run_id}")
        return record, st

    def _status(self, record: Any, st: RunState) -> str:
        if st.finished:
            return st.status
        if self._queued(record.run_id):
            return "queued"
        return str(record.status)

    def _priority(self, priority: str) -> str:
        if priority not in PRIORITIES:
            raise invalid(f'priority is one of {", ".join(PRIORITIES)}, not "{priority}"')
        return priority

    # --- workflows ----------------------------------------------------------------------

    def _compile(self, src: WorkflowSource) -> tuple[Any, list[Diagnostic]]:
        """(IR or None, diagnostics) of a workflow as sent."""
        from aobc.backend.aobir import decode
        from aobc.backend.lower import lower
        from aobc.driver import compile_source
        from aobc.passes.pipeline import pipeline_for
        from aobc.source import SourceFile

        if src.ir is not None:
            try:
                return decode(src.ir, src.filename or "<upload>.aobir"), []
            except AobcError as err:
                return None, list(err.diagnostics)
        if src.document is not None:
            import json

            name, text = src.filename or "<upload>.json", json.dumps(src.document)
        else:
            name, text = src.filename or "<upload>.aob", src.source or ""
        if src.opt_level not in ("O0", "O1", "O2"):
            return None, [
                Diagnostic.error(
                    ec.INVALID_VALUE, "opt_level is O0, O1 or O2", JsonLoc("<request>", "")
                )
            ]
        try:
            comp = compile_source(
                SourceFile.of(name, text), pipeline_for(None, src.opt_level), self.policy
            )
        except AobcError as err:
            return None, list(err.diagnostics)
        if not comp.ok:
            return None, comp.diagnostics
        origins = {nid: o.patch_id for nid, o in comp.overlay.head.provenance.nodes.items()}
        return lower(comp.workflow, origins), comp.diagnostics

    async def validate(self, who: Principal, src: WorkflowSource) -> dict[str, Any]:
        ir, diags = self._compile(src)
        out: dict[str, Any] = {
            "ok": ir is not None,
            "diagnostics": [d.to_json() for d in diags],
            "workflow": None,
        }
        if ir is not None:
            out["workflow"] = {
                "name": ir.name,
                "hash": ir.workflow_hash,
                "nodes": len(ir.nodes),
                "inputs": [d.name for d in ir.inputs],
            }
        return out

    async def deploy(
        self, who: Principal, src: WorkflowSource, namespace: str, tags: list[str]
    ) -> tuple[dict[str, Any], bool]:
        self._namespace(who, namespace)
        ir, diags = self._compile(src)
        if ir is None:
            raise invalid(diags)
        digest = self.engine.store_ir(ir, ir.name)
        form = "ir" if src.ir is not None else "json" if src.document is not None else "source"
        deployment, created = self.registry.deploy(
            namespace, digest, ir.name, ir.workflow_hash, len(ir.nodes), form, who.subject, tags
        )
        deployment["warnings"] = [d.to_json() for d in diags if not d.is_error]
        return deployment, created

    def _namespace(self, who: Principal, namespace: str) -> None:
        if not who.sees(namespace):
            raise forbidden(f'the token may not act in namespace "{namespace}"')

    async def list_workflows(self, who: Principal) -> list[dict[str, Any]]:
        allowed = None if "*" in who.namespaces else sorted(who.namespaces)
        return self.registry.workflows(allowed)

    async def get_workflow(self, who: Principal, namespace: str, name: str) -> dict[str, Any]:
        if not who.sees(namespace):
            raise not_found(f"no workflow {name}")
        deployments = self.registry.deployments(namespace, name)
        if not deployments:
            raise not_found(f"no workflow {name} in namespace {namespace}")
        return {
            "namespace": namespace,
            "name": name,
            "tags": self.registry.tags_of(namespace, name),
            "deployments": deployments,
        }

    async def set_tag(
        self, who: Principal, namespace: str, name: str, tag: str, digest: str
    ) -> dict[str, Any]:
        self._namespace(who, namespace)
        digest = digest.removeprefix("sha256:")
        found = self.registry.get(namespace, digest)
        if found is None or found["name"] != name:
            raise not_found(f"no deployment {digest} of workflow {name}")
        self.registry.set_tag(namespace, name, tag, digest, who.subject)
        return {"namespace": namespace, "name": name, "tag": tag, "hash": digest}

    def _resolve(self, req: StartRequest) -> str:
        if req.hash is not None:
            digest = req.hash.removeprefix("sha256:")
            if self.registry.get(req.namespace, digest) is None:
                raise not_found(f"no deployment {req.hash} in namespace {req.namespace}")
            return digest
        if req.workflow is None:
            raise invalid("give a workflow (with a tag) or a hash")
        tagged = self.registry.resolve(req.namespace, req.workflow, req.tag)
        if tagged is None:
            raise not_found(f"workflow {req.workflow} has no tag {req.tag} in {req.namespace}")
        return tagged

    # --- runs ------------------------------------------------------------------------------

    async def start_run(self, who: Principal, req: StartRequest) -> tuple[dict[str, Any], bool]:
        self._namespace(who, req.namespace)
        priority = self._priority(req.priority)
        if req.idempotency_key is not None:
            existing = self.events.find_run(req.idempotency_key, namespace=req.namespace)
            if existing is not None:
                return await self.get_run(who, existing.run_id), False
        digest = self._resolve(req)
        ir = self.engine.load_ir(digest)
        labels = {"by": who.subject, "priority": priority, "deployment": digest}
        run_id = f"r-{uuid.uuid4().hex[:16]}"
        try:
            first = self.engine.create(
                ir,
                req.inputs,
                run_id=run_id,
                idempotency_key=req.idempotency_key,
                namespace=req.namespace,
                labels=labels,
            )
        except AobcError as err:
            raise invalid(err.diagnostics) from None
        if first[0].run_id != run_id:  # another process created it with the same key
            return await self.get_run(who, first[0].run_id), False
        self._kick(run_id, priority)
        return await self.get_run(who, run_id), True

    async def get_run(self, who: Principal, run_id: str) -> dict[str, Any]:
        record, st = self._run(who, run_id)
        original = None
        if st.replay is not None and st.replay.get("of"):
            original = self.state(str(st.replay["of"]))
        return views.run_detail(record, st, self._status(record, st), original)

    async def list_runs(self, who: Principal, f: RunFilter) -> list[dict[str, Any]]:
        if f.status is not None and f.status == "queued":
            records = [
                r
                for run_id in self._queued_runs()
                if (r := self.events.get_run(run_id)) is not None
            ]
        else:
            records = self.events.list_runs(
                status=f.status, workflow=f.workflow, namespace=f.namespace, limit=10_000
            )
        out = []
        for r in records:
            if not who.sees(r.namespace) or (f.parent is not None and r.parent != f.parent):
                continue
            status = "queued" if self._queued(r.run_id) else r.status
            out.append(views.run_summary(r, status))
            if len(out) >= f.limit:
                break
        return out

    def _command(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a runtime command; its refusals (ExecutionError) are conflicts."""
        try:
            return fn(*args, **kwargs)
        except AobcError as err:
            raise ApiError(409, "conflict", str(err), err.diagnostics) from None

    async def cancel_run(self, who: Principal, run_id: str, reason: str) -> dict[str, Any]:
        self._run(who, run_id)
        status = self._command(self._cancel, who, run_id, reason)
        self.hub.poke(run_id)
        return {"run": run_id, "status": status, "by": who.subject}

    async def replay_run(
        self, who: Principal, run_id: str, from_node: str, mode: str, priority: str
    ) -> dict[str, Any]:
        from aobc.runtime.replay import prepare

        record, _ = self._run(who, run_id)
        priority = self._priority(priority)
        try:
            plan = prepare(self.engine, run_id, from_node, mode)
        except AobcError as err:
            raise invalid(err.diagnostics) from None
        first = self.engine.create(
            plan.ir,
            plan.original.inputs,
            parent=run_id,
            frozen=plan.frozen,
            replay=plan.meta,
            search_path=plan.search_path,
            namespace=record.namespace,
            labels={"by": who.subject, "priority": priority, "deployment": record.ir_hash},
        )
        new = first[0].run_id
        self._kick(new, priority)
        return await self.get_run(who, new)

    async def timeline(
        self, who: Principal, run_id: str, after: int, limit: int, node: str | None
    ) -> list[dict[str, Any]]:
        self._run(who, run_id)
        events = self.events.read(run_id, after=after, limit=limit)
        return [e.to_json() for e in events if node is None or e.data.get("node") == node]

    async def run_document(self, who: Principal, run_id: str) -> dict[str, Any]:
        _, st = self._run(who, run_id)
        ov = self.engine.live.overlay_for(st)
        return {"run": run_id, "version": ov.head.hash, "document": ov.head.document}

    # --- patches ---------------------------------------------------------------------------

    def _agent_budget(self, who: Principal, st: RunState, raw: dict[str, Any]) -> None:
        ops = raw.get("operations", raw.get("ops"))
        if isinstance(ops, list) and len(ops) > who.budget.ops_per_patch:
            raise forbidden(
                f"the patch has {len(ops)} operations; this agent token may send at most "
                f"{who.budget.ops_per_patch} in one patch",
                "patch-budget",
            )
        source = f"agent-token:{who.subject}"
        used = len(
            {
                e.data["patch"].get("id")
                for e in self.events.read(st.run_id)
                if e.type == "patch.proposed" and e.data.get("source") == source
            }
        )
        if used >= who.budget.patches_per_run:
            raise forbidden(
                f"this agent token has proposed {used} patches to run {st.run_id}; its budget "
                f"is {who.budget.patches_per_run} per run",
                "patch-budget",
            )

    async def propose_patch(self, who: Principal, run_id: str, raw: Any) -> dict[str, Any]:
        from aobc.runtime.commands import propose

        _, st = self._run(who, run_id)
        if st.finished:
            raise conflict(f"run {run_id} already {st.status}; a patch can only change a live run")
        if isinstance(raw, list):
            raw = {"operations": raw}
        if not isinstance(raw, dict):
            raise invalid('a patch is an array of operations or an object with "operations"')
        # Who wrote a patch is who sent it: whatever the body claims is replaced.
        body = {k: v for k, v in raw.items() if k not in ("id", "author_kind", "author")}
        if who.is_agent:
            self._agent_budget(who, st, body)
            body = {**body, "author_kind": "agent", "author": who.node or who.subject}
            source = f"agent-token:{who.subject}"
        else:
            body = {**body, "author_kind": "human", "author": who.subject}
            source = f"human:{who.subject}"
        try:
            patch, version = self.engine.live.check(st, body, f"run:{run_id}")
        except AobcError as err:
            raise invalid(err.diagnostics) from None
        why = self.review.reason(patch, version)
        self._command(propose, self.stores, run_id, body, who.subject, source=source)
        self.events.record_patch(run_id, patch.to_json(), "proposed", {"source": source})
        self.hub.poke(run_id)
        self._kick(run_id)
        view = views.patch_row(self.events.get_patch(patch.id) or {}, None)
        return {**view, "review": why}

    def _patch_record(self, who: Principal, patch_id: str) -> dict[str, Any]:
        row = self.events.get_patch(patch_id)
        if row is None:
            short = patch_id.removeprefix("sha256:")
            hits = [
                r
                for r in self.events.list_patches()
                if len(short) >= 8 and str(r["patch"].get("id", "")).startswith(f"sha256:{short}")
            ]
            row = hits[0] if len(hits) == 1 else None
        if row is None or row.get("run_id") is None:
            raise not_found(f"no patch {patch_id}")
        record = self.events.get_run(str(row["run_id"]))
        if record is None or not who.sees(record.namespace):
            raise not_found(f"no patch {patch_id}")
        return row

    def _run_status(self, run_id: str | None) -> str | None:
        st = self.state(run_id) if run_id is not None else None
        return st.status if st is not None else None

    async def list_patches(
        self, who: Principal, run_id: str | None, status: str | None
    ) -> list[dict[str, Any]]:
        if run_id is not None:
            self._run(who, run_id)
        out = []
        for row in self.events.list_patches(run_id):
            rid = row.get("run_id")
            record = self.events.get_run(str(rid)) if rid is not None else None
            if record is None or not who.sees(record.namespace):
                continue
            view = views.patch_row(row, self._run_status(rid))
            if status is None or view["status"] == status:
                out.append(view)
        return out

    async def get_patch(self, who: Principal, patch_id: str) -> dict[str, Any]:
        row = self._patch_record(who, patch_id)
        return views.patch_row(row, self._run_status(row.get("run_id")))

    async def decide_patch(
        self, who: Principal, patch_id: str, decision: str, reason: str
    ) -> dict[str, Any]:
        from aobc.runtime.commands import decide_patch

        row = self._patch_record(who, patch_id)
        run_id = str(row["run_id"])
        pid = str(row["patch"]["id"])
        patch = row["patch"]
        if (
            decision.startswith("approve")
            and who is not LOCAL
            and patch.get("author_kind") == "human"
            and patch.get("author") == who.subject
        ):
            # A human patch is held so that a second person looks at it (--review-human).
            raise forbidden(
                f"{who.subject} wrote patch {pid[:19]}; another approver must approve it"
            )
        self._command(decide_patch, self.stores, pid, decision, who.subject, reason, run_id=run_id)
        verdict = "approved" if decision.startswith("approve") else "rejected"
        self.metrics.patches.labels(verdict, str(row["patch"].get("author_kind"))).inc()
        self.hub.poke(run_id)
        self._kick(run_id)
        return await self.get_patch(who, pid)

    # --- approvals -------------------------------------------------------------------------

    async def list_tickets(self, who: Principal) -> list[dict[str, Any]]:
        out = []
        for record in self._active_runs():
            if not who.sees(record.namespace):
                continue
            st = self.state(record.run_id)
            if st is None:
                continue
            for t in st.tickets.values():
                self.tickets[t.ticket] = st.run_id
                if t.open:
                    out.append(views.ticket(t, st))
        return out

    def _ticket_run(self, who: Principal, ticket: str) -> RunState:
        run_id = self.tickets.get(ticket)
        if run_id is None:
            for record in self._active_runs():
                st = self.state(record.run_id)
                if st is not None and ticket in st.tickets:
                    run_id = self.tickets[ticket] = record.run_id
                    break
        st = self.state(run_id) if run_id is not None else None
        record = self.events.get_run(run_id) if run_id is not None else None
        if st is None or record is None or not who.sees(record.namespace):
            raise not_found(f"no approval ticket {ticket}")
        return st

    async def decide_ticket(
        self, who: Principal, ticket: str, decision: str, reason: str
    ) -> dict[str, Any]:
        from aobc.runtime.commands import decide

        st = self._ticket_run(who, ticket)
        t = st.tickets[ticket]
        if who.groups is not None and not (set(t.approvers) & (who.groups | {who.subject})):
            raise forbidden(
                f"ticket {ticket} asks {', '.join(t.approvers)}; this token may decide for "
                f"{', '.join(sorted(who.groups)) or 'nobody'}"
            )
        self._command(decide, self.stores, ticket, decision, who.subject, reason, state=st)
        self.metrics.tickets.labels(
            "approved" if decision.startswith("approve") else "rejected"
        ).inc()
        self.hub.poke(st.run_id)
        self._kick(st.run_id)
        fresh = self.state(st.run_id)
        assert fresh is not None
        return views.ticket(fresh.tickets[ticket], fresh)

    # --- events ---------------------------------------------------------------------------

    async def subscribe(self, who: Principal, run_id: str, after: int) -> LogSubscription:
        self._run(who, run_id)
        sub = self.hub.subscribe(run_id, self.sse_buffer)
        self.metrics.subscribers.set(self.hub.subscriber_count)
        return LogSubscription(self, sub, max(after, 0))
