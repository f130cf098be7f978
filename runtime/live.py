"""Live patching: a patch proposed while a run is going changes the graph it runs on.

Whoever proposes it (an agent node's answer, or a human through `aobc patch propose`), a patch
goes through the same path:

1. it is validated by the overlay engine, with spawn budgets counted for this run, and
   refused if it touches a node that already ran or is running;
2. it is materialized as a new workflow version;
3. the version is lowered to a new IR (incrementally: only what the patch touched is
   re-encoded);
4. the run continues on the new IR from its current state (routing is rebuilt by replaying
   what finished).

`patch.proposed`, then `patch.applied` (with the version and IR hashes) or `patch.refused`
(with the diagnostics), land in the run's log; the patch itself is recorded in the patches
table. A refused patch changes nothing.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from aobc.backend.lower import LowerCache, lower
from aobc.backend.unlower import document_of
from aobc.canonical import content_hash
from aobc.errors import AobcError
from aobc.frontend.overlay import Overlay, Version
from aobc.frontend.patchfile import Patch, patch_from_json
from aobc.frontend.schema import JsonSourceMap, load_document
from aobc.runtime import core

if TYPE_CHECKING:
    from aobc.runtime.driver import RunDriver
    from aobc.runtime.engine import Engine
    from aobc.runtime.state import RunState


def frozen_of(state: RunState) -> frozenset[str]:
    """The nodes a patch may not touch, as far as the log tells: finished, started, or
    waiting on a ticket or a timer. (A driver knows more: see `Live.frozen`.)"""
    waiting = {t.node for t in state.tickets.values()} | set(state.timers)
    return frozenset(set(state.done) | set(state.started) | set(state.failed) | waiting)


class Live:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._overlays: dict[str, Overlay] = {}
        self._caches: dict[str, LowerCache] = {}

    def overlay(self, d: RunDriver) -> Overlay:
        """The run's version history: its starting workflow plus the patches applied so far."""
        return self.overlay_for(d.state)

    def overlay_for(self, state: RunState) -> Overlay:
        """`overlay` for a run known only by its folded state (no driver needed)."""
        ov = self._overlays.get(state.run_id)
        if ov is not None and ov.head.hash == state.version:
            return ov
        start = self.engine.load_ir(state.start_ir)
        diags: list[Any] = []
        base = load_document(document_of(start), JsonSourceMap(f"run:{state.run_id}"), diags)
        if base is None:
            raise RuntimeError(f"cannot rebuild the workflow of run {state.run_id}")
        ov = Overlay(base, self.engine.options.policy)
        for applied in state.patches:
            ov.apply(patch_from_json(applied["patch"], f"run:{state.run_id}"))
        self._overlays[state.run_id] = ov
        return ov

    def check(self, state: RunState, raw: Any, file: str = "<patch>") -> tuple[Patch, Version]:
        """Validate a patch against a run's current version without changing anything.

        The same checks `apply` makes (syntax, rebase, frozen nodes, verify, budgets), on a
        copy of the run's history, for callers that must answer before the driver sees the
        patch (the HTTP API's 422). Raises AobcError with the diagnostics.
        """
        patch = patch_from_json(raw, file, self.engine.options.policy)
        trial = copy.copy(self.overlay_for(state))
        trial.history = list(trial.history)
        trial.known = dict(trial.known)
        return patch, trial.apply(patch, frozen=frozen_of(state))

    def document(self, d: RunDriver) -> dict[str, Any]:
        """The current workflow document, which an agent's patch addresses."""
        return self.overlay(d).head.document

    def frozen(self, d: RunDriver) -> frozenset[str]:
        """Nodes a patch may not touch: finished, running or waiting ones."""
        out = {
            n.id
            for i, n in enumerate(d.ir.nodes)
            if d.routing.status[i] in (core.DONE, core.RUNNING)
        }
        return frozenset(out | set(d.state.done) | set(d.state.started) | set(d.tasks))

    def apply(
        self,
        d: RunDriver,
        raw: dict[str, Any],
        *,
        source: str,
        approval: dict[str, Any] | None = None,
    ) -> bool:
        """Validate and apply one patch to a running run; True when it was applied.

        A patch the review policy wants a person for is held (`patch.held`) instead, unless
        `approval` (who approved it, and why) is given.
        """
        kind, _, who = source.partition(":")
        if isinstance(raw, dict) and "operations" in raw and "author_kind" not in raw:
            raw = {
                **raw,
                "author_kind": "agent" if kind == "agent" else "human",
                "author": who or kind,
            }
        try:
            ov = self.overlay(d)
            # A patch without a base applies to the version the run is on when it arrives.
            patch = patch_from_json(raw, f"run:{d.state.run_id}")
        except AobcError as err:
            self._refuse(d, raw, source, err)
            return False
        known = approval is not None or any(
            p["patch"].get("id") == patch.id for p in d.state.proposals
        )
        if not known:
            d.emit("patch.proposed", {"patch": patch.to_json(), "source": source})
        try:
            version = ov.apply(patch, frozen=self.frozen(d))
        except AobcError as err:
            self._refuse(d, patch.to_json(), source, err)
            return False
        review = self.engine.options.review
        why = review.reason(patch, version) if review is not None and approval is None else None
        if why is not None:
            self._hold(d, patch, source, why)
            return False
        cache = self._caches.setdefault(d.state.run_id, LowerCache())
        origins = {nid: o.patch_id for nid, o in version.provenance.nodes.items()}
        ir = lower(
            version.workflow,
            origins,
            document=version.document,
            workflow_hash=version.hash,
            cache=cache,
        )
        digest = self.engine.store_ir(ir, name=version.workflow.name)
        applied: dict[str, Any] = {
            "patch": patch.to_json(),
            "author_kind": patch.author_kind,
            "author": patch.author,
            "reason": patch.reason,
            "base": patch.base,
            "version": version.hash,
            "ir": digest,
        }
        if approval is not None:
            applied["approved_by"] = approval.get("by")
        d.emit("patch.applied", applied)
        d.flush()
        detail: dict[str, Any] = {"version": version.hash, "ir": digest}
        if approval is not None:
            detail["approval"] = approval
        self.engine.stores.events.record_patch(d.state.run_id, patch.to_json(), "applied", detail)
        d.set_ir(ir)
        return True

    def _hold(self, d: RunDriver, patch: Patch, source: str, why: str) -> None:
        # The trial left the overlay at the held version: forget it, so the next patch
        # starts again from the version the run is really on.
        self._overlays.pop(d.state.run_id, None)
        d.emit("patch.held", {"patch": patch.to_json(), "source": source, "reason": why})
        d.flush()
        self.engine.stores.events.record_patch(
            d.state.run_id, patch.to_json(), "pending", {"reason": why, "source": source}
        )

    def _refuse(self, d: RunDriver, raw: Any, source: str, err: AobcError) -> None:
        record = raw if isinstance(raw, dict) else {"raw": raw}
        pid = record.get("id") or content_hash(record)
        diagnostics = [x.to_json() for x in err.diagnostics]
        d.emit("patch.refused", {"patch": pid, "source": source, "diagnostics": diagnostics})
        d.flush()
        self.engine.stores.events.record_patch(
            d.state.run_id, {"id": pid, **record}, "refused", {"diagnostics": diagnostics}
        )
