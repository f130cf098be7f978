"""A patch with its provenance: RFC 6902 operations plus who wrote them, why, and against what.

A patch file is either a bare RFC 6902 array, or an envelope:

    {"author_kind": "agent", "author": "triage", "reason": "add a notification",
     "base": "sha256:…", "created_at": "2026-11-21T10:00:00Z",
     "operations": [{"op": "add", "path": "/nodes/-", "value": {…}}]}

(`ops` is accepted for `operations`.) The patch id is the content hash of everything but the
id itself; an envelope that carries an `id` must carry the right one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from aobc import errorcodes as ec
from aobc.canonical import content_hash
from aobc.diagnostics import Diagnostic
from aobc.errors import PatchError
from aobc.frontend.json_loader import parse_json
from aobc.frontend.jsonpatch import PatchOp, parse_ops
from aobc.policy import DEFAULT_POLICY, Policy
from aobc.source import JsonLoc, SourceFile

AuthorKind = Literal["agent", "human", "optimizer"]
AUTHOR_KINDS: Final = ("agent", "human", "optimizer")
_ENVELOPE: Final = frozenset(
    {"id", "author_kind", "author", "reason", "base", "created_at", "operations", "ops"}
)


@dataclass(frozen=True, slots=True)
class Patch:
    """An overlay: operations and their provenance. Immutable; its id is its content hash."""

    ops: tuple[PatchOp, ...]
    author_kind: AuthorKind = "human"
    author: str = "unknown"
    reason: str = ""
    base: str | None = None
    created_at: str | None = None
    loc: JsonLoc | None = field(default=None, compare=False)
    #: Pointer prefix of operation i inside the file ("/operations" or "" for a bare array).
    ops_pointer: str = field(default="/operations", compare=False)
    id: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", content_hash(self.body()))

    def body(self) -> dict[str, Any]:
        return {
            "author_kind": self.author_kind,
            "author": self.author,
            "reason": self.reason,
            "base": self.base,
            "created_at": self.created_at,
            "operations": [op.to_json() for op in self.ops],
        }

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, **self.body()}

    def op_loc(self, i: int) -> JsonLoc | None:
        if self.loc is None:
            return None
        return JsonLoc(self.loc.file, f"{self.ops_pointer}/{i}")

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]

    def describe(self) -> str:
        who = f"{self.author_kind} {self.author}"
        return f"patch {self.short_id} by {who}" + (f" ({self.reason})" if self.reason else "")


def patch_from_json(raw: Any, file: str = "<patch>", policy: Policy = DEFAULT_POLICY) -> Patch:
    """A Patch from a parsed patch document; raises PatchError with every problem."""
    root = JsonLoc(file, "")
    if isinstance(raw, list):
        ops = _ops(raw, JsonLoc(file, ""), policy)
        return Patch(ops=ops, loc=root, ops_pointer="")
    if not isinstance(raw, dict):
        raise PatchError(
            Diagnostic.error(
                ec.PATCH_SYNTAX,
                'a patch is an array of operations or an object with "operations"',
                root,
            )
        )
    diags: list[Diagnostic] = []
    for key in raw:
        if key not in _ENVELOPE:
            diags.append(
                Diagnostic.error(ec.PATCH_SYNTAX, f'unknown patch field "{key}"', root.child(key))
            )
    key = "operations" if "operations" in raw else "ops"
    if key not in raw:
        diags.append(Diagnostic.error(ec.PATCH_SYNTAX, 'a patch needs "operations"', root))
        raise PatchError(diags)
    kind = raw.get("author_kind", "human")
    if kind not in AUTHOR_KINDS:
        diags.append(
            Diagnostic.error(
                ec.PATCH_SYNTAX,
                f"author_kind must be agent, human or optimizer, not {kind!r}",
                root.child("author_kind"),
            )
        )
    strings = {}
    for name in ("author", "reason", "base", "created_at", "id"):
        value = raw.get(name)
        if value is not None and not isinstance(value, str):
            diags.append(
                Diagnostic.error(ec.PATCH_SYNTAX, f"{name} must be a string", root.child(name))
            )
        strings[name] = value if isinstance(value, str) else None
    try:
        ops = _ops(raw[key], root.child(key), policy)
    except PatchError as err:
        diags.extend(err.diagnostics)
        ops = ()
    if diags:
        raise PatchError(diags)
    patch = Patch(
        ops=ops,
        author_kind=kind,
        author=strings["author"] or "unknown",
        reason=strings["reason"] or "",
        base=strings["base"],
        created_at=strings["created_at"],
        loc=root,
        ops_pointer="/" + key,
    )
    if strings["id"] is not None and strings["id"] != patch.id:
        raise PatchError(
            Diagnostic.error(
                ec.PATCH_ID_MISMATCH,
                f"patch id {strings['id']} is not its content hash {patch.id}; was it edited?",
                root.child("id"),
            )
        )
    return patch


def _ops(raw: Any, loc: JsonLoc, policy: Policy) -> tuple[PatchOp, ...]:
    if isinstance(raw, list) and len(raw) > policy.limits.max_patch_ops:
        raise PatchError(
            Diagnostic.error(
                ec.SIZE_LIMIT,
                f"patch has {len(raw)} operations; the limit is {policy.limits.max_patch_ops}",
                loc,
            )
        )
    return parse_ops(raw, loc)


def load_patch(path: str | Path, policy: Policy = DEFAULT_POLICY) -> Patch:
    """Read a patch file; raises PatchError (or FrontendError for unreadable files)."""
    from aobc.frontend import read_source

    src = read_source(path)
    return parse_patch_text(src, policy)


def parse_patch_text(src: SourceFile, policy: Policy = DEFAULT_POLICY) -> Patch:
    diags: list[Diagnostic] = []
    ok, raw = parse_json(src, policy.limits, diags)
    if not ok:
        raise PatchError(diags)
    return patch_from_json(raw, src.name, policy)
