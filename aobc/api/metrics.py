"""Prometheus metrics of one control plane, in a registry of its own (not the global one).

Runs by state are counted from the store when scraped; everything else is observed from
the events the engine reports and from the requests the app serves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from aobc.runtime.stores.base import Event

LATENCY_BUCKETS: Final = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0)


class _RunsByState(Collector):
    def __init__(self, counts: Callable[[], dict[tuple[str, str], int]]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "aobc_runs", "Runs in the store by namespace and state", labels=["namespace", "state"]
        )
        for (namespace, state), n in sorted(self.counts().items()):
            family.add_metric([namespace, state], n)
        yield family


class Metrics:
    def __init__(self, run_counts: Callable[[], dict[tuple[str, str], int]]) -> None:
        r = self.registry = CollectorRegistry()
        r.register(_RunsByState(run_counts))
        self.node_seconds = Histogram(
            "aobc_node_duration_seconds",
            "Time from a node's start to its completion",
            ["workflow", "node"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "aobc_run_queue_depth", "Runs waiting for a driver slot", ["priority"], registry=r
        )
        self.driven = Gauge("aobc_runs_driven", "Runs this server is driving now", registry=r)
        self.patches = Counter(
            "aobc_patch_decisions",
            "Live patch decisions (applied, refused, held, approved, rejected)",
            ["decision", "author_kind"],
            registry=r,
        )
        self.tickets = Counter(
            "aobc_ticket_decisions", "Approval ticket decisions", ["decision"], registry=r
        )
        self.events = Counter("aobc_events", "Run events seen, by type", ["type"], registry=r)
        self.subscribers = Gauge("aobc_sse_subscribers", "Open event streams", registry=r)
        self.buffered = Gauge(
            "aobc_sse_buffered_events", "Events waiting in subscriber buffers", registry=r
        )
        self.sse_sent = Counter("aobc_sse_events_sent", "Events sent over SSE", registry=r)
        self.sse_dropped = Counter(
            "aobc_sse_dropped", "Streams dropped for falling behind", registry=r
        )
        self.requests = Counter(
            "aobc_http_requests", "API requests", ["method", "route", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "aobc_http_request_duration_seconds",
            "API request latency (to the first byte of streams)",
            ["route"],
            registry=r,
        )
        self._started: dict[tuple[str, str], float] = {}
        self._workflow: dict[str, str] = {}
        self.workflow_of: Callable[[str], str] = lambda run_id: "unknown"

    def observe(self, e: Event) -> None:
        """Count one event the engine reported."""
        self.events.labels(e.type).inc()
        d: dict[str, Any] = e.data
        if e.type == "run.started":
            self._workflow[e.run_id] = str(d.get("name", ""))
        elif e.type == "node.started":
            self._started[(e.run_id, d["node"])] = e.time
        elif e.type in ("node.succeeded", "node.failed"):
            if e.type == "node.failed" and not d.get("final"):
                return
            began = self._started.pop((e.run_id, d["node"]), None)
            if began is not None:
                self.node_seconds.labels(self._name(e.run_id), d["node"]).observe(
                    max(e.time - began, 0.0)
                )
        elif e.type in ("patch.applied", "patch.refused", "patch.held"):
            kind = d.get("author_kind") or _author_kind(d)
            self.patches.labels(e.type.split(".")[1], kind).inc()
        elif e.type == "ticket.decided" and d.get("timed_out"):
            # People's decisions are counted where the API takes them; timeouts happen here.
            self.tickets.labels(f"{d.get('decision', '')} (timeout)").inc()
        elif e.type in ("run.succeeded", "run.failed", "run.cancelled"):
            self._workflow.pop(e.run_id, None)
            for key in [k for k in self._started if k[0] == e.run_id]:
                del self._started[key]

    def _name(self, run_id: str) -> str:
        name = self._workflow.get(run_id)
        if name is None:
            name = self._workflow[run_id] = self.workflow_of(run_id)
        return name


def _author_kind(d: dict[str, Any]) -> str:
    patch = d.get("patch")
    if isinstance(patch, dict):
        return str(patch.get("author_kind", "unknown"))
    source = str(d.get("source", ""))
    return "agent" if source.startswith("agent") else "human" if source else "unknown"
