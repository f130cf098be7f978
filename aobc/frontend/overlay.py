"""Materialization: a base workflow plus ordered patches is a new, verified workflow version.

    base (hash B) + patch 1 + patch 2 + ... = materialized workflow (hash M)

Every patch, whoever wrote it (agent, human, optimizer), goes through the same steps here:

1. if it names a base version other than the current head, it is rebased
   (`aobc.frontend.rebase`) or refused;
2. its operations are applied one by one, copy-on-write, to the head's canonical document;
3. the result is loaded through the schema and verified; a patch is refused for any error it
   introduces (errors the head already had are not blamed on it);
4. agent spawn budgets are checked: agent nodes added per patch, per run (per `Overlay`), per
   authoring agent (its `spawn_budget`), and the nesting depth of agents spawned by agents.

A refused patch raises `PatchError` and leaves the overlay exactly as it was. Every node and
edge records the patch that introduced or last changed it (`Provenance`). Materialization is
deterministic: the same base and the same ordered patches give byte-identical documents.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aobc import errorcodes as ec
from aobc.backend.serialize import edge_document, node_document, to_document
from aobc.canonical import DocumentHasher
from aobc.diagnostics import Diagnostic
from aobc.errors import PatchError
from aobc.frontend.jsonpatch import PatchOp, apply_ops
from aobc.frontend.patchfile import Patch
from aobc.frontend.rebase import Touched, rebase_ops, touched_by
from aobc.frontend.schema import Loader, Reuse
from aobc.ir import AgentNode, Edge, Node, Workflow, walk_nodes
from aobc.policy import DEFAULT_POLICY, Policy
from aobc.source import JsonLoc, Loc

EdgeKey = tuple[str, str, str | None]


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a node or edge came from: the base, or a patch (and which operation)."""

    patch_id: str | None = None
    author_kind: str = "base"
    author: str = ""
    loc: Loc | None = None
    #: True when `loc` is the whole node or edge value (so a field is `loc.child(field)`).
    whole: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"patch": self.patch_id, "author_kind": self.author_kind, "author": self.author}


BASE = Origin()


@dataclass(frozen=True, slots=True)
class Provenance:
    """For each node and edge, the patch that introduced or last changed it."""

    nodes: Mapping[str, Origin] = field(default_factory=dict)
    edges: Mapping[EdgeKey, Origin] = field(default_factory=dict)
    #: How many agents deep in a chain of agent-authored patches each agent node is.
    agent_depth: Mapping[str, int] = field(default_factory=dict)
    #: Agent nodes added so far by each authoring agent (for `spawn_budget`).
    spawned_by: Mapping[str, int] = field(default_factory=dict)
    agents_added: int = 0

    def node(self, node_id: str) -> Origin:
        return self.nodes.get(node_id, BASE)

    def edge(self, key: EdgeKey) -> Origin:
        return self.edges.get(key, BASE)


@dataclass(frozen=True, slots=True)
class Version:
    """One materialized workflow version."""

    hash: str
    document: dict[str, Any]  # canonical; shared with later versions, never mutate
    workflow: Workflow
    provenance: Provenance
    patch: Patch | None = None
    applied_ops: tuple[PatchOp, ...] = ()
    warnings: tuple[Diagnostic, ...] = ()
    errors: tuple[Diagnostic, ...] = ()


@dataclass(slots=True)
class OverlaySourceMap:
    """Locations in a materialized document: base nodes keep their source, patched ones
    point at the operation that last touched them."""

    document: dict[str, Any]
    base: Workflow
    provenance: Provenance
    per_field: bool = False
    _base_nodes: dict[str, Node] = field(default_factory=dict)
    _base_edges: dict[EdgeKey, Edge] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._base_nodes = {n.id: n for n in self.base.nodes}
        self._base_edges = {e.key: e for e in self.base.edges}

    def loc(self, pointer: str) -> Loc | None:
        parts = pointer.split("/")
        if len(parts) >= 3 and parts[1] in ("nodes", "edges") and parts[2].isdigit():
            items = self.document.get(parts[1])
            i = int(parts[2])
            if isinstance(items, list) and i < len(items) and isinstance(items[i], dict):
                return self._item_loc(parts[1], items[i], parts[3:])
        return self.base.loc

    def _item_loc(self, kind: str, item: dict[str, Any], rest: list[str]) -> Loc | None:
        if kind == "nodes":
            nid = item.get("id")
            origin = self.provenance.nodes.get(nid) if isinstance(nid, str) else None
            if origin is not None and origin.patch_id is not None:
                if origin.whole and isinstance(origin.loc, JsonLoc) and rest:
                    return origin.loc.child(*rest)
                return origin.loc
            node = self._base_nodes.get(nid) if isinstance(nid, str) else None
            if node is None:
                return self.base.loc
            return node.field_loc(rest[0]) if rest else node.loc
        key = (item.get("from"), item.get("to"), item.get("label"))
        origin = self.provenance.edges.get(key)  # type: ignore[arg-type]
        if origin is not None and origin.patch_id is not None:
            if origin.whole and isinstance(origin.loc, JsonLoc) and rest:
                return origin.loc.child(*rest)
            return origin.loc
        edge = self._base_edges.get(key)  # type: ignore[arg-type]
        return edge.loc if edge is not None else self.base.loc


def _error_counter(diags: Iterable[Diagnostic]) -> Counter[tuple[str, str]]:
    return Counter((d.code.name if d.code else "", d.message) for d in diags if d.is_error)


def _agent_ids(nodes: Iterable[Node]) -> set[str]:
    """Agent nodes, nested ones named `owner/inner` after the top-level node holding them."""
    out = set()
    for top in nodes:
        for n in walk_nodes((top,)):
            if isinstance(n, AgentNode):
                out.add(n.id if n is top else f"{top.id}/{n.id}")
    return out


class Overlay:
    """A version history: a base and the patches applied to it so far, for one run or build.

    `apply` validates and applies one patch; `head` is the current version. Versions seen by
    this overlay (and any registered with `remember`) can be named as a patch's base.
    """

    def __init__(
        self, base: Workflow, policy: Policy = DEFAULT_POLICY, *, verify: bool = True
    ) -> None:
        self.hasher = DocumentHasher()
        self.policy = policy
        self.verify = verify
        self.base_workflow = base
        doc = to_document(base)
        from aobc.passes.verify import verify as verify_wf

        diags = verify_wf(base, policy) if verify else []
        depth = {a: 0 for a in _agent_ids(base.nodes)}
        self.base = Version(
            hash=self.hasher.content_hash(doc),
            document=doc,
            workflow=base,
            provenance=Provenance(agent_depth=depth),
            warnings=tuple(d for d in diags if not d.is_error),
            errors=tuple(d for d in diags if d.is_error),
        )
        self.head = self.base
        self.history: list[Version] = [self.base]
        self.known: dict[str, Version] = {self.base.hash: self.base}

    def remember(self, versions: Iterable[Version]) -> None:
        """Make versions from another history available as rebase bases."""
        for v in versions:
            self.known.setdefault(v.hash, v)

    # --- applying ------------------------------------------------------------------

    def apply(self, patch: Patch, *, frozen: frozenset[str] = frozenset()) -> Version:
        """Validate and apply `patch` on the head. Raises PatchError; then nothing changed.

        `frozen` names nodes that already ran or are running in a live run: a patch that
        changes them, removes them, or adds or removes an edge into them is refused.
        """
        head = self.head
        note = Diagnostic.note(f"while applying {patch.describe()}", patch.loc)
        ops = self._rebased(patch, head, note)
        doc, touched = self._apply_ops(patch, ops, head.document, note)
        self._check_frozen(patch, touched, frozen, note)
        version = self._materialize(patch, ops, doc, touched, note)
        self.head = version
        self.history.append(version)
        self.known.setdefault(version.hash, version)
        return version

    def _rebased(self, patch: Patch, head: Version, note: Diagnostic) -> tuple[PatchOp, ...]:
        if patch.base is None or patch.base == head.hash:
            return patch.ops
        written = self.known.get(patch.base)
        try:
            return rebase_ops(patch, written.document if written else None, head.document)
        except PatchError as err:
            raise PatchError([d.with_notes(note) for d in err.diagnostics]) from None

    def _apply_ops(
        self, patch: Patch, ops: Sequence[PatchOp], doc: dict[str, Any], note: Diagnostic
    ) -> tuple[Any, Touched]:
        touched = Touched()
        for i, op in enumerate(ops):
            touched.add(touched_by(op, doc), i)
            try:
                doc = apply_ops(doc, [op], patch.op_loc(i))
            except PatchError as err:
                raise PatchError([d.with_notes(note) for d in err.diagnostics]) from None
        return doc, touched

    def _check_frozen(
        self, patch: Patch, touched: Touched, frozen: frozenset[str], note: Diagnostic
    ) -> None:
        if not frozen:
            return
        problems = []
        for nid, i in touched.nodes.items():
            if nid in frozen:
                problems.append(
                    Diagnostic.error(
                        ec.PATCH_TOUCHES_EXECUTED,
                        f'patch changes node "{nid}", which has already run or is running',
                        patch.op_loc(i),
                        note,
                    )
                )
        for (src, dst, _), i in touched.edges.items():
            if dst in frozen:
                problems.append(
                    Diagnostic.error(
                        ec.PATCH_TOUCHES_EXECUTED,
                        f'patch changes edge "{src}" -> "{dst}", but "{dst}" has already run or is running',
                        patch.op_loc(i),
                        note,
                    )
                )
        if problems:
            raise PatchError(problems)

    def _materialize(
        self, patch: Patch, ops: tuple[PatchOp, ...], raw: Any, touched: Touched, note: Diagnostic
    ) -> Version:
        head = self.head
        origin = Origin(patch.id, patch.author_kind, patch.author)
        prov = self._provenance(head.provenance, patch, ops, origin, touched)
        smap = OverlaySourceMap(raw if isinstance(raw, dict) else {}, self.base_workflow, prov)
        diags: list[Diagnostic] = []
        reuse = Reuse.of(head.document, head.workflow)
        wf = Loader(smap, diags, reuse).workflow(raw, "", head.workflow.name)
        if wf is None or any(d.is_error for d in diags):
            errors = [d.with_notes(note) for d in diags if d.is_error]
            raise PatchError(
                errors
                or [
                    Diagnostic.error(ec.PATCH_CONFLICT, "patch leaves no workflow", patch.loc, note)
                ]
            )
        prov = self._spawn(head, wf, prov, patch, touched, note)
        checks: list[Diagnostic] = []
        if self.verify:
            from aobc.passes.verify import verify as verify_wf

            checks = verify_wf(wf, self.policy)
            fresh = _error_counter(checks) - _error_counter(head.errors)
            if fresh:
                introduced = [
                    d.with_notes(note)
                    for d in checks
                    if d.is_error and (d.code.name if d.code else "", d.message) in fresh
                ]
                raise PatchError(introduced)
        doc = _canonical(raw, head.document, wf)
        return Version(
            hash=self.hasher.content_hash(doc),
            document=doc,
            workflow=wf,
            provenance=prov,
            patch=patch,
            applied_ops=ops,
            warnings=tuple(d for d in checks if not d.is_error),
            errors=tuple(d for d in checks if d.is_error),
        )

    def _provenance(
        self,
        prev: Provenance,
        patch: Patch,
        ops: Sequence[PatchOp],
        origin: Origin,
        touched: Touched,
    ) -> Provenance:
        def where(i: int) -> Origin:
            loc = patch.op_loc(i)
            op = ops[i]
            # An add or replace of a whole node or edge: its fields live under "value".
            whole = op.op in ("add", "replace") and op.path.count("/") == 2 and loc is not None
            return dataclasses.replace(
                origin, loc=loc.child("value") if whole and loc else loc, whole=whole
            )

        nodes = dict(prev.nodes)
        for nid, i in touched.nodes.items():
            nodes[nid] = where(i)
        edges = dict(prev.edges)
        for key, i in touched.edges.items():
            edges[key] = where(i)
        return dataclasses.replace(prev, nodes=nodes, edges=edges)

    def _spawn(
        self,
        head: Version,
        wf: Workflow,
        prov: Provenance,
        patch: Patch,
        touched: Touched,
        note: Diagnostic,
    ) -> Provenance:
        """Count agent nodes this patch adds against every budget.

        Only nodes the patch touched can hold new agents, so only they are examined.
        """
        ids = set(touched.nodes)
        before = _agent_ids(n for n in head.workflow.nodes if n.id in ids)
        added = sorted(_agent_ids(n for n in wf.nodes if n.id in ids) - before)
        if not added:
            return prov
        budget = self.policy.agents
        problems = []
        if len(added) > budget.max_per_patch:
            problems.append(
                f"patch adds {len(added)} agent nodes ({', '.join(added)}); at most {budget.max_per_patch} per patch"
            )
        total = prov.agents_added + len(added)
        if total > budget.max_per_run:
            problems.append(
                f"patches have now added {total} agent nodes; at most {budget.max_per_run} per run"
            )
        spawned = dict(prov.spawned_by)
        depth = dict(prov.agent_depth)
        parent_depth = 0
        if patch.author_kind == "agent":
            author = head.workflow.node(patch.author)
            allowed = author.spawn_budget if isinstance(author, AgentNode) else 0
            used = spawned.get(patch.author, 0) + len(added)
            if used > allowed:
                problems.append(
                    f'agent "{patch.author}" has now spawned {used} agent nodes; its spawn_budget is {allowed}'
                )
            spawned[patch.author] = used
            parent_depth = prov.agent_depth.get(patch.author, 0)
            if parent_depth + 1 > budget.max_depth:
                problems.append(
                    f'agents spawned by "{patch.author}" would be {parent_depth + 1} levels deep; '
                    f"at most {budget.max_depth}"
                )
        if problems:
            raise PatchError(
                [Diagnostic.error(ec.SPAWN_BUDGET, p, patch.loc, note) for p in problems]
            )
        for a in added:
            depth[a] = parent_depth + (1 if patch.author_kind == "agent" else 0)
        return dataclasses.replace(prov, agent_depth=depth, spawned_by=spawned, agents_added=total)


def _canonical(raw: dict[str, Any], prev: dict[str, Any], wf: Workflow) -> dict[str, Any]:
    """The canonical document of `wf`, sharing every unchanged node and edge with `prev`.

    Patches apply to canonical documents; re-serializing only what the patch touched keeps
    the next patch's cost proportional to its size, and keeps the identity of unchanged
    nodes, which provenance and incremental reloads rely on.
    """
    doc = to_document(dataclasses.replace(wf, nodes=(), edges=()))
    kept = {id(x) for x in prev.get("nodes", ())}
    doc["nodes"] = [
        x if id(x) in kept else node_document(n)
        for x, n in zip(raw.get("nodes", ()), wf.nodes, strict=True)
    ]
    kept = {id(x) for x in prev.get("edges", ())}
    doc["edges"] = [
        x if id(x) in kept else edge_document(e)
        for x, e in zip(raw.get("edges", ()), wf.edges, strict=True)
    ]
    return doc


def materialize(
    base: Workflow,
    patches: Sequence[Patch],
    policy: Policy = DEFAULT_POLICY,
    *,
    exclude: Iterable[str] = (),
) -> Version:
    """Apply `patches` in order; patches whose id is in `exclude` are left out (a rollback).

    Patches after an excluded one were written against versions that included it; they are
    rebased onto the versions without it, or refused when they depended on it.
    """
    skip = set(exclude)
    overlay = Overlay(base, policy)
    if skip:
        full = Overlay(base, policy)
        for p in patches:
            full.apply(p)
        overlay.remember(full.history)
    for p in patches:
        if p.id not in skip:
            overlay.apply(p)
    return overlay.head
