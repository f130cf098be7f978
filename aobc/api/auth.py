"""Bearer tokens, their roles, and what each role may do.

Tokens live in a file the server reads (TOML, or JSON when the name ends in `.json`), and
only as hashes: a token is a random secret (`aob_` + 43 URL-safe characters), and the file
keeps `sha256:<hex>` of it, which is enough for a secret of that entropy and lets a request
be checked with one hash and a dictionary lookup. `aobc serve token add` makes a token,
prints it once, and appends its entry:

    [[token]]
    subject = "alice@example.com"        # recorded with every decision this token makes
    roles = ["operator", "approver"]     # or role = "viewer"
    hash = "sha256:9f2c..."
    namespaces = ["default"]             # optional; ["*"] for all (default: ["default"])
    groups = ["support-leads"]           # optional: the tickets an approver may decide

    [[token]]
    subject = "triage-bot"
    role = "agent"
    hash = "sha256:41aa..."
    budget = { patches_per_run = 3, ops_per_patch = 20 }
    node = "draft"                       # optional: patch as this agent node (its spawn_budget)

Roles: `viewer` reads; `operator` reads, deploys, starts, cancels, replays and proposes
patches; `approver` reads and decides tickets and held patches; `agent` reads the runs it
patches and proposes patches within its budget. The server re-reads the file when it
changes, so tokens can be added or revoked without a restart.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from aobc import errorcodes as ec
from aobc.diagnostics import Diagnostic
from aobc.errors import AobcError
from aobc.source import JsonLoc

ROLES: Final = ("viewer", "operator", "approver", "agent")

#: What each role may do. "read" covers everything "read-run" does.
PERMISSIONS: Final[Mapping[str, frozenset[str]]] = {
    "viewer": frozenset({"read"}),
    "operator": frozenset({"read", "deploy", "start", "cancel", "replay", "propose"}),
    "approver": frozenset({"read", "decide"}),
    "agent": frozenset({"read-run", "agent-propose"}),
}


#: Which roles hold a permission, for error messages and the OpenAPI description.
def roles_with(permission: str) -> list[str]:
    return [r for r in ROLES if permission in PERMISSIONS[r]]


@dataclass(frozen=True, slots=True)
class AgentBudget:
    """What an agent token may propose on one run."""

    patches_per_run: int = 5
    ops_per_patch: int = 50


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request comes from: a token's subject and what it may do."""

    subject: str
    roles: frozenset[str]
    namespaces: frozenset[str] = frozenset({"default"})
    groups: frozenset[str] | None = None  # None: may decide any ticket
    budget: AgentBudget = field(default_factory=AgentBudget)
    node: str | None = None  # an agent token's patches are authored as this node

    def can(self, permission: str) -> bool:
        if permission == "read-run" and self.can("read"):
            return True
        return any(permission in PERMISSIONS[r] for r in self.roles)

    def sees(self, namespace: str) -> bool:
        return "*" in self.namespaces or namespace in self.namespaces

    @property
    def is_agent(self) -> bool:
        """A token whose patches are an agent's (it holds no human role that proposes)."""
        return "agent" in self.roles and not self.can("propose")


LOCAL: Final = Principal("local", frozenset(ROLES) - {"agent"}, frozenset({"*"}))
"""Who every request is with `--no-auth` (local use only)."""


def new_token() -> str:
    return "aob_" + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def _fail(file: str, pointer: str, message: str) -> AobcError:
    return AobcError(Diagnostic.error(ec.TOKENS_FILE, message, JsonLoc(file, pointer)))


def _strings(raw: Any, file: str, ptr: str) -> list[str]:
    if isinstance(raw, str):
        return [raw]
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise _fail(file, ptr, "must be a string or a list of strings")
    return list(raw)


def _budget(raw: Any, file: str, ptr: str) -> AgentBudget:
    if raw is None:
        return AgentBudget()
    if not isinstance(raw, dict):
        raise _fail(file, ptr, "budget must be a table")
    known = {"patches_per_run", "ops_per_patch"}
    for key, value in raw.items():
        if key not in known:
            raise _fail(file, f"{ptr}/{key}", f'unknown budget setting "{key}"')
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _fail(file, f"{ptr}/{key}", f"{key} must be a non-negative integer")
    return AgentBudget(**raw)


def parse_entry(raw: Any, file: str, ptr: str) -> tuple[str, Principal]:
    """(hash, principal) of one `[[token]]` entry."""
    if not isinstance(raw, dict):
        raise _fail(file, ptr, "a token entry must be a table")
    allowed = {"subject", "role", "roles", "hash", "namespaces", "groups", "budget", "node"}
    for key in raw:
        if key not in allowed:
            raise _fail(file, f"{ptr}/{key}", f'unknown token field "{key}"')
    subject = raw.get("subject")
    if not isinstance(subject, str) or not subject:
        raise _fail(file, f"{ptr}/subject", "a token needs a subject")
    digest = raw.get("hash")
    if not isinstance(digest, str) or not digest.startswith("sha256:") or len(digest) != 71:
        raise _fail(file, f"{ptr}/hash", 'hash must be "sha256:" and 64 hex digits')
    roles = _strings(raw.get("roles", raw.get("role", [])), file, f"{ptr}/roles")
    if not roles:
        raise _fail(file, f"{ptr}/roles", "a token needs a role")
    for role in roles:
        if role not in ROLES:
            raise _fail(file, f"{ptr}/roles", f'unknown role "{role}" (one of {", ".join(ROLES)})')
    namespaces = _strings(raw.get("namespaces", ["default"]), file, f"{ptr}/namespaces")
    groups = raw.get("groups")
    node = raw.get("node")
    if node is not None and not isinstance(node, str):
        raise _fail(file, f"{ptr}/node", "node must be a string")
    return digest.lower(), Principal(
        subject=subject,
        roles=frozenset(roles),
        namespaces=frozenset(namespaces),
        groups=None if groups is None else frozenset(_strings(groups, file, f"{ptr}/groups")),
        budget=_budget(raw.get("budget"), file, f"{ptr}/budget"),
        node=node,
    )


def load_tokens(path: str | Path) -> dict[str, Principal]:
    """The tokens of a file, by hash; AobcError with a located diagnostic when it is bad."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise _fail(str(p), "", f"cannot read the tokens file: {err}") from None
    try:
        raw = json.loads(text) if p.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
        raise _fail(str(p), "", f"the tokens file does not parse: {err}") from None
    entries = raw.get("token", raw.get("tokens", [])) if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        raise _fail(str(p), "", "the tokens file holds a list of [[token]] entries")
    out: dict[str, Principal] = {}
    for i, entry in enumerate(entries):
        digest, principal = parse_entry(entry, str(p), f"/token/{i}")
        if digest in out:
            raise _fail(str(p), f"/token/{i}/hash", "the same token is listed twice")
        out[digest] = principal
    return out


class TokenStore:
    """The tokens of a file, re-read when the file changes (checked at most once a second)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._mtime = self._stat()
        self._tokens = load_tokens(self.path)
        self._checked = time.monotonic()

    def _stat(self) -> tuple[int, int]:
        st = os.stat(self.path)
        return st.st_mtime_ns, st.st_size

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < 1.0:
            return
        self._checked = now
        try:
            mtime = self._stat()
            if mtime != self._mtime:
                self._tokens = load_tokens(self.path)
                self._mtime = mtime
        except (OSError, AobcError):
            pass  # a half-written or removed file: keep the tokens we had

    def lookup(self, token: str) -> Principal | None:
        self._refresh()
        return self._tokens.get(token_hash(token))


def entry_toml(subject: str, roles: list[str], digest: str, **extra: Any) -> str:
    """A `[[token]]` entry, as `aobc serve token add` appends it."""
    lines = ["[[token]]", f"subject = {json.dumps(subject)}", f"roles = {json.dumps(roles)}"]
    lines.append(f'hash = "{digest}"')
    for key, value in extra.items():
        if value is None:
            continue
        if isinstance(value, dict):
            inner = ", ".join(f"{k} = {json.dumps(v)}" for k, v in value.items())
            lines.append(f"{key} = {{ {inner} }}")
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"
