"""Deployed workflows and their tags, for the embedded control plane.

A deployment is a compiled IR in the CAS (its hash is the artifact hash runs start from);
a tag (`main`, `v3`) names one deployment of a workflow in a namespace and can be moved.
Kept in `<store>/control.db` (SQLite, WAL) beside the runtime's own database, so the
runtime's schema stays the runtime's; a distributed control plane keeps the same two
tables in Postgres.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS deployments (
        namespace TEXT NOT NULL,
        digest TEXT NOT NULL,
        name TEXT NOT NULL,
        workflow_hash TEXT NOT NULL,
        nodes INTEGER NOT NULL,
        source TEXT NOT NULL,
        created REAL NOT NULL,
        by TEXT NOT NULL,
        PRIMARY KEY (namespace, digest)
    )""",
    "CREATE INDEX IF NOT EXISTS deployments_by_name ON deployments (namespace, name, created)",
    """CREATE TABLE IF NOT EXISTS tags (
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        tag TEXT NOT NULL,
        digest TEXT NOT NULL,
        updated REAL NOT NULL,
        by TEXT NOT NULL,
        PRIMARY KEY (namespace, name, tag)
    )""",
)

#: The deployment columns, in the order both registries select them.
DEPLOYMENT_COLUMNS = "namespace, digest, name, workflow_hash, nodes, source, created, by"
_DEPLOYMENT = DEPLOYMENT_COLUMNS


class DeploymentRows:
    """A deployment row as the API shows it; shared by the SQLite and Postgres registries."""

    def tags_of(self, namespace: str, name: str, digest: str | None = None) -> dict[str, str]:
        raise NotImplementedError

    def _deployment(self, row: tuple[Any, ...]) -> dict[str, Any]:
        out = dict(zip(DEPLOYMENT_COLUMNS.split(", "), row, strict=True))
        out["hash"] = out.pop("digest")
        out["tags"] = self.tags_of(out["namespace"], out["name"], out["hash"])
        return out


class Registry(DeploymentRows):
    """Deployments and tags in one SQLite file. Used from one thread (the server's loop)."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        for statement in _SCHEMA:
            self.conn.execute(statement)

    def close(self) -> None:
        self.conn.close()

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
    ) -> tuple[dict[str, Any], bool]:
        """Record a deployment (idempotent by hash) and point `tags` at it; (it, created)."""
        now = time.time()
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            cur = self.conn.execute(
                f"INSERT INTO deployments ({_DEPLOYMENT}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (namespace, digest) DO NOTHING",
                (namespace, digest, name, workflow_hash, nodes, source, now, by),
            )
            for tag in tags:
                self._tag(namespace, name, tag, digest, by, now)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        found = self.get(namespace, digest)
        assert found is not None
        return found, cur.rowcount == 1

    def _tag(self, namespace: str, name: str, tag: str, digest: str, by: str, now: float) -> None:
        self.conn.execute(
            "INSERT INTO tags (namespace, name, tag, digest, updated, by) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (namespace, name, tag) DO UPDATE SET digest = excluded.digest,"
            " updated = excluded.updated, by = excluded.by",
            (namespace, name, tag, digest, now, by),
        )

    def set_tag(self, namespace: str, name: str, tag: str, digest: str, by: str) -> None:
        self._tag(namespace, name, tag, digest, by, time.time())

    def get(self, namespace: str, digest: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            f"SELECT {_DEPLOYMENT} FROM deployments WHERE namespace = ? AND digest = ?",
            (namespace, digest),
        ).fetchone()
        return None if row is None else self._deployment(row)

    def tags_of(self, namespace: str, name: str, digest: str | None = None) -> dict[str, str]:
        sql = "SELECT tag, digest FROM tags WHERE namespace = ? AND name = ?"
        params: tuple[Any, ...] = (namespace, name)
        if digest is not None:
            sql, params = sql + " AND digest = ?", (*params, digest)
        return dict(self.conn.execute(sql + " ORDER BY tag", params).fetchall())

    def resolve(self, namespace: str, name: str, tag: str) -> str | None:
        row = self.conn.execute(
            "SELECT digest FROM tags WHERE namespace = ? AND name = ? AND tag = ?",
            (namespace, name, tag),
        ).fetchone()
        return None if row is None else str(row[0])

    def workflows(self, namespaces: list[str] | None) -> list[dict[str, Any]]:
        """One entry per (namespace, workflow name): its latest deployment and its tags."""
        rows = self.conn.execute(
            "SELECT namespace, name, count(*), max(created) FROM deployments"
            " GROUP BY namespace, name ORDER BY namespace, name"
        ).fetchall()
        out = []
        for namespace, name, count, latest in rows:
            if namespaces is not None and namespace not in namespaces:
                continue
            digest = self.conn.execute(
                "SELECT digest FROM deployments WHERE namespace = ? AND name = ?"
                " ORDER BY created DESC, rowid DESC LIMIT 1",
                (namespace, name),
            ).fetchone()[0]
            out.append(
                {
                    "namespace": namespace,
                    "name": name,
                    "deployments": count,
                    "latest": digest,
                    "updated": latest,
                    "tags": self.tags_of(namespace, name),
                }
            )
        return out

    def deployments(self, namespace: str, name: str, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            f"SELECT {_DEPLOYMENT} FROM deployments WHERE namespace = ? AND name = ?"
            " ORDER BY created DESC, rowid DESC LIMIT ?",
            (namespace, name, limit),
        ).fetchall()
        return [self._deployment(r) for r in rows]
