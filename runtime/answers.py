"""`Answers`: recording job results in Postgres, batched, exactly once per job key.

A job's answer is one autocommit statement (one round trip, no BEGIN/COMMIT) shared by every
answer submitted in the same turn of the event loop: claim each key in the inbox, record the
result in `job_results`, store a small output in the CAS's Postgres tier (`blobs`), queue the
`node.results` message in the outbox when the answer is published, and delete the outbox rows
the answers retire (an eager job's own row: runtime/eager.py); each part only for the keys
whose claim won, all of it atomically. A key claimed already (a duplicate ran at the same time
and recorded first: the claim waited for its commit) answers as that one did.

Used by a `Worker` (published answers, produced by the worker itself as soon as the statement
commits) and by a coordinator's eager slots (unpublished: the coordinator is the one waiting).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from aobc.canonical import canonical_bytes, sha256_hex
from aobc.runtime.batch import Batch
from aobc.runtime.remote import RESULTS_TOPIC
from aobc.runtime.stores.base import CAS
from aobc.runtime.stores.postgres import PostgresEventLog

_decode = msgspec.json.Decoder().decode

INBOX: str = "aobc.worker"  # the inbox consumer name every job key is claimed under

_RECORD = """
WITH answer AS (
    SELECT * FROM unnest(
        %(keys)s::text[], %(messages)s::text[], %(digests)s::text[], %(datas)s::bytea[],
        %(runs)s::text[], %(publish)s::bool[], %(retire)s::bigint[]
    ) WITH ORDINALITY AS a(key, message, digest, data, run, publish, retire, ord)
), claimed AS (
    INSERT INTO inbox (consumer, message_id, time)
    SELECT %(consumer)s, key, %(now)s FROM answer
    ON CONFLICT DO NOTHING RETURNING message_id
), recorded AS (
    INSERT INTO job_results (key, message, created)
    SELECT a.key, a.message, %(now)s FROM answer a JOIN claimed c ON c.message_id = a.key
), blob AS (
    INSERT INTO blobs (digest, data, created)
    SELECT DISTINCT ON (a.digest) a.digest, a.data, %(now)s
    FROM answer a JOIN claimed c ON c.message_id = a.key WHERE a.data IS NOT NULL
    ON CONFLICT (digest) DO NOTHING
), retired AS (
    DELETE FROM outbox WHERE id IN (SELECT retire FROM answer WHERE retire IS NOT NULL)
), sent AS (
    INSERT INTO outbox (topic, key, payload, created, direct)
    SELECT %(topic)s, a.run, a.message, %(now)s, %(direct)s
    FROM answer a JOIN claimed c ON c.message_id = a.key
    WHERE a.publish
    ORDER BY a.ord
    RETURNING id
)
SELECT (SELECT array_agg(message_id) FROM claimed), (SELECT array_agg(id ORDER BY id) FROM sent)
"""


@dataclass(frozen=True, slots=True)
class Answer:
    job: Mapping[str, Any]
    result: dict[str, Any]  # from `JobRunner.run_job`: the output value under `_value`
    publish: bool = True  # queue it on `node.results`
    retire: int | None = None  # an outbox row to delete with it


class Answers:
    """Records answers for one process; `submit` them from the event loop's thread."""

    def __init__(self, events: PostgresEventLog, cas: CAS, inline_limit: int) -> None:
        self.events = events
        self.cas = cas
        self.inline_limit = inline_limit
        self._batch: Batch[Answer, dict[str, Any]] = Batch(self._record_many)

    async def submit(self, answer: Answer) -> dict[str, Any]:
        """Record `answer`; the result message as recorded (another's, if a duplicate of the
        job recorded first). A large output goes to the CAS first, off this thread."""
        result = answer.result
        if result.get("ok") and "output" not in result:
            data = result["_data"] = canonical_bytes(result["_value"])
            if len(data) > self.inline_limit:
                await asyncio.to_thread(self._put_large, result)
        return await self._batch.submit(answer)

    def _put_large(self, result: dict[str, Any]) -> None:
        result["output"] = self.cas.put(result.pop("_data"))
        result.pop("_value", None)

    def _record_many(self, answers: list[Answer]) -> list[dict[str, Any]]:
        events = self.events
        keys: list[str] = []
        messages: list[str] = []
        digests: list[str | None] = []
        datas: list[bytes | None] = []
        runs: list[str] = []
        publish: list[bool] = []
        retire: list[int | None] = []
        results: list[dict[str, Any]] = []
        again: list[Answer] = []
        for answer in answers:
            job, result = answer.job, answer.result
            key = str(job["key"])
            if key in keys:  # the same job twice in one batch: the second one after
                again.append(answer)
                continue
            small = None
            if result["ok"] and "output" not in result:
                value = result.pop("_value", None)
                small = result.pop("_data", None) or canonical_bytes(value)
                # Small: in the message, and in the CAS's Postgres tier with the result.
                result["output"] = sha256_hex(small)
                result["value"] = value
            keys.append(key)
            messages.append(canonical_bytes(result).decode("utf-8"))
            digests.append(result.get("output") if small is not None else None)
            datas.append(small)
            runs.append(str(job["run"]))
            publish.append(answer.publish)
            retire.append(answer.retire)
            results.append(result)
        row = (
            events._conn()
            .execute(
                _RECORD,
                {
                    "consumer": INBOX,
                    "keys": keys,
                    "messages": messages,
                    "digests": digests,
                    "datas": datas,
                    "runs": runs,
                    "publish": publish,
                    "retire": retire,
                    "now": time.time(),
                    "topic": RESULTS_TOPIC,
                    "direct": events.publisher is not None,
                },
            )
            .fetchone()
        )
        assert row is not None
        claimed = set(row[0] or ())
        ids = row[1] or []
        sent = [i for i, key in enumerate(keys) if key in claimed and publish[i]]
        events.hand_over(
            [(id_, RESULTS_TOPIC, runs[i], messages[i]) for id_, i in zip(ids, sent, strict=True)]
        )
        recorded: dict[str, dict[str, Any]] = {}
        for i, key in enumerate(keys):
            if key in claimed:
                recorded[key] = results[i]
                continue
            with events.transaction() as tx:
                rows = tx.execute("SELECT message FROM job_results WHERE key = %s", (key,))
                winner = dict(_decode(rows[0][0]))
                if publish[i]:
                    tx.send(RESULTS_TOPIC, runs[i], winner)
            recorded[key] = winner
        if again:
            for answer, result in zip(again, self._record_many(again), strict=True):
                recorded.setdefault(str(answer.job["key"]), result)
        return [recorded[str(answer.job["key"])] for answer in answers]
