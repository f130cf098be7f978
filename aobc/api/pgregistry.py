"""Deployed workflows and their tags in Postgres, for the distributed control plane.

The same two tables as `registry.Registry` keeps in SQLite for the embedded store, here in
the runtime's schema as `control_deployments` and `control_tags` (prefixed so they never
meet a runtime table; created if missing, as `CREATE ... IF NOT EXISTS` is safe for several
servers starting at once). Any number of `aobc serve` processes may share them.
"""

from __future__ import annotations

import time
from typing import Any, Final

import psycopg

from aobc.api.registry import DEPLOYMENT_COLUMNS, DeploymentRows
from aobc.runtime.stores.postgres import PostgresEventLog

_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS control_deployments (
        namespace text NOT NULL,
        digest text NOT NULL,
        name text NOT NULL,
        workflow_hash text NOT NULL,
        nodes integer NOT NULL,
        source text NOT NULL,
        created double precision NOT NULL,
        by text NOT NULL,
        ord bigint GENERATED ALWAYS AS IDENTITY,
        PRIMARY KEY (namespace, digest)
    )""",
    "CREATE INDEX IF NOT EXISTS control_deployments_by_name"
    " ON control_deployments (namespace, name, created)",
    """CREATE TABLE IF NOT EXISTS control_tags (
        namespace text NOT NULL,
        name text NOT NULL,
        tag text NOT NULL,
        digest text NOT NULL,
        updated double precision NOT NULL,
        by text NOT NULL,
        PRIMARY KEY (namespace, name, tag)
    )""",
)

_DEPLOYMENT: Final = DEPLOYMENT_COLUMNS
_TAG: Final = """INSERT INTO control_tags (namespace, name, tag, digest, updated, by)
VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (namespace, name, tag) DO UPDATE
SET digest = excluded.digest, updated = excluded.updated, by = excluded.by"""


class PostgresRegistry(DeploymentRows):
    """`registry.Registry` over a connection of its own to the event log's database."""

    def __init__(self, events: PostgresEventLog) -> None:
        self.conn: psycopg.Connection[Any] = events.connect()
        try:
            with self.conn.transaction():
                # Two servers creating the tables at once would race on the catalog.
                self.conn.execute("SELECT pg_advisory_xact_lock(hashtext('aobc.control'))")
                for statement in _SCHEMA:
                    self.conn.execute(statement)
        except BaseException:
            self.conn.close()
            raise

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
        with self.conn.transaction():
            cur = self.conn.execute(
                f"INSERT INTO control_deployments ({_DEPLOYMENT}) VALUES"
                " (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (namespace, digest) DO NOTHING",
                (namespace, digest, name, workflow_hash, nodes, source, now, by),
            )
            created = cur.rowcount == 1
            for tag in tags:
                self.conn.execute(_TAG, (namespace, name, tag, digest, now, by))
        found = self.get(namespace, digest)
        assert found is not None
        return found, created

    def set_tag(self, namespace: str, name: str, tag: str, digest: str, by: str) -> None:
        self.conn.execute(_TAG, (namespace, name, tag, digest, time.time(), by))

    def get(self, namespace: str, digest: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            f"SELECT {_DEPLOYMENT} FROM control_deployments WHERE namespace = %s AND digest = %s",
            (namespace, digest),
        ).fetchone()
        return None if row is None else self._deployment(row)

    def tags_of(self, namespace: str, name: str, digest: str | None = None) -> dict[str, str]:
        if digest is None:
            rows = self.conn.execute(
                "SELECT tag, digest FROM control_tags WHERE namespace = %s AND name = %s"
                " ORDER BY tag",
                (namespace, name),
            ).fetchall()
        else:
            rows = self.conn.execute(
                "SELECT tag, digest FROM control_tags WHERE namespace = %s AND name = %s"
                " AND digest = %s ORDER BY tag",
                (namespace, name, digest),
            ).fetchall()
        return {str(tag): str(d) for tag, d in rows}

    def resolve(self, namespace: str, name: str, tag: str) -> str | None:
        row = self.conn.execute(
            "SELECT digest FROM control_tags WHERE namespace = %s AND name = %s AND tag = %s",
            (namespace, name, tag),
        ).fetchone()
        return None if row is None else str(row[0])

    def workflows(self, namespaces: list[str] | None) -> list[dict[str, Any]]:
        """One entry per (namespace, workflow name): its latest deployment and its tags."""
        rows = self.conn.execute(
            "SELECT DISTINCT ON (namespace, name) namespace, name, digest,"
            " count(*) OVER (PARTITION BY namespace, name),"
            " max(created) OVER (PARTITION BY namespace, name)"
            " FROM control_deployments ORDER BY namespace, name, created DESC, ord DESC"
        ).fetchall()
        return [
            {
                "namespace": namespace,
                "name": name,
                "deployments": int(count),
                "latest": digest,
                "updated": latest,
                "tags": self.tags_of(namespace, name),
            }
            for namespace, name, digest, count, latest in rows
            if namespaces is None or namespace in namespaces
        ]

    def deployments(self, namespace: str, name: str, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            f"SELECT {_DEPLOYMENT} FROM control_deployments WHERE namespace = %s AND name = %s"
            " ORDER BY created DESC, ord DESC LIMIT %s",
            (namespace, name, limit),
        ).fetchall()
        return [self._deployment(r) for r in rows]
