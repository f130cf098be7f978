"""`aobc explain`: the text report, the JSON lines schema, the HTML page, and the presets."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar

import pytest

from aobc.cli import main
from aobc.cli.explain import use_color
from aobc.diagnostics import DiagnosticEngine
from aobc.driver import Compilation, materialize_file
from aobc.explain import Explanation, explain, to_json_lines, to_text
from aobc.explain_html import layout, to_html
from aobc.frontend import load_text
from aobc.ir import Edge, Effect, FunctionNode, Workflow
from aobc.passes.base import Pass, PassContext
from aobc.passes.pipeline import PRESETS, PassPipeline
from aobc.passes.prune_dead import PruneDeadPass
from aobc.passes.registry import available_passes
from aobc.passes.spec import parse_pipeline, walk

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.aob"))
JSON_EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.json"))
JSON_EXAMPLES = [p for p in JSON_EXAMPLES if p.with_suffix(".aob").exists()]

SYNC = """
workflow order_sync {
  input id: str
  output report = report.value

  orders  = http GET "https://shop.example.com/api/orders?id=${inputs.id}" { effect: idempotent }
  stock   = http GET "https://shop.example.com/api/stock?id=${inputs.id}" { effect: idempotent }
  merge   = function "m:merge" { effect: pure, args: { o: orders.body, s: stock.body } }
  unused  = function "m:stats" { effect: pure, args: { o: orders.body } }
  summary = agent { model: "gpt-4o-mini", prompt: "Summarize ${merge.value}" }
  report  = function "m:report" { effect: pure, args: { s: summary.value } }
  audit   = function "m:audit" { effect: effectful, args: { id: inputs.id } }

  orders -> stock -> merge
  orders -> merge
  orders -> unused
  merge -> summary -> report
  merge -> audit
}
"""

#: The keys of each record type of `--output json` (docs/explain.md).
SCHEMA: dict[tuple[str, str | None], set[str]] = {
    ("explain", None): {"type", "version", "file", "workflow", "pipeline", "ok"},
    ("pass", None): {
        "type",
        "index",
        "name",
        "spec",
        "seconds",
        "changed",
        "skipped",
        "ops",
        "patch",
    },
    ("remark", None): {"type", "pass", "kind", "name", "nodes", "loc", "message", "args"},
    ("change", "node"): {"type", "target", "id", "change", "by", "loc"},
    ("change", "edge"): {"type", "target", "id", "from", "to", "label", "change", "by", "loc"},
    ("cost", None): {"type", "before", "after"},
}
COST_KEYS = {"nodes", "edges", "critical_path_ms", "critical_path", "http_round_trips", "agents"}


@pytest.fixture
def sync(tmp_path: Path) -> Path:
    path = tmp_path / "order_sync.aob"
    path.write_text(SYNC)
    return path


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def records(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def check_schema(recs: list[dict[str, Any]]) -> None:
    assert recs[0]["type"] == "explain" and recs[0]["version"] == 1
    assert recs[-1]["type"] == "cost"
    for rec in recs:
        key = (rec["type"], rec.get("target"))
        assert set(rec) == SCHEMA[key], rec
    cost = recs[-1]
    assert set(cost["before"]) == COST_KEYS and set(cost["after"]) == COST_KEYS


# --- the three outputs on every example ----------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES + JSON_EXAMPLES, ids=lambda p: p.name)
def test_json_lines_follow_the_schema_on_every_example(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "explain", str(path), "-O2", "--output", "json")
    assert code == 0
    recs = records(out)
    check_schema(recs)
    assert [r["spec"] for r in recs if r["type"] == "pass"][:1] == ["verify"]
    assert any(r["type"] == "remark" and r["name"] == "critical-path" for r in recs)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_text_and_html_on_every_example(
    path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "report.html"
    code, out, err = cli(capsys, "explain", str(path), "-O2", "--html", str(page))
    assert code == 0, err
    for heading in ("passes", "remarks", "changes", "cost"):
        assert f"\n{heading}" in out
    assert "critical path (estimated latency)" in out and "HTTP round trips" in out
    assert "\x1b[" not in out  # captured output is not a terminal
    assert f"wrote {page}" in err
    doc = Page.of(page.read_text())
    assert doc.svgs == ["before", "after"]
    assert not doc.external


def test_the_text_report_says_what_fired_where_and_why(
    sync: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "explain", str(sync), "-O2")
    assert code == 0
    assert 'removed "unused": its output reaches no output or effect' in out
    assert f"at {sync}:9:3" in out  # the node's source location
    assert 'dropped "orders" -> "stock"' in out
    assert 'kept "audit": nothing reads its output' in out
    assert out.count('kept "audit"') == 1  # said once, though prune-dead ran twice (fixpoint)
    assert "- node unused removed  by prune-dead" in out
    assert "- edge orders -> stock removed  by parallelize" in out
    assert "2,310 ms    2,160 ms  -150 (-6%)" in out


def test_json_reports_changes_costs_and_timings(
    sync: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(
        capsys, "explain", str(sync), "--passes", "prune-dead,parallelize", "--output", "json"
    )
    assert code == 0
    recs = records(out)
    check_schema(recs)
    passes = [r for r in recs if r["type"] == "pass"]
    assert [(p["name"], p["changed"], p["ops"]) for p in passes] == [
        ("prune-dead", True, 2),
        ("parallelize", True, 1),
    ]
    assert all(p["seconds"] >= 0 and p["patch"].startswith("sha256:") for p in passes)
    changes = {
        (r["target"], r["id"]): (r["change"], r["by"]) for r in recs if r["type"] == "change"
    }
    assert changes == {
        ("node", "unused"): ("removed", ["prune-dead"]),
        ("edge", "orders -> unused"): ("removed", ["prune-dead"]),
        ("edge", "orders -> stock"): ("removed", ["parallelize"]),
    }
    remark = next(r for r in recs if r["type"] == "remark" and r["name"] == "dropped-order")
    assert remark["nodes"] == ["orders", "stock"] and remark["loc"] == f"{sync}:14:3"
    cost = recs[-1]
    assert (cost["before"]["nodes"], cost["after"]["nodes"]) == (7, 6)
    assert cost["before"]["critical_path_ms"] == 2310.0
    assert cost["after"]["critical_path_ms"] == 2160.0
    assert cost["after"]["http_round_trips"] == 2


def test_patches_apply_before_the_report_starts(
    sync: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    patch = tmp_path / "add.json"
    node = {"id": "extra", "type": "function", "effect": "pure", "fn": "m:extra"}
    patch.write_text(json.dumps([{"op": "add", "path": "/nodes/-", "value": node}]))
    code, out, _ = cli(
        capsys,
        "explain",
        str(sync),
        "--patch",
        str(patch),
        "--passes",
        "prune-dead",
        "--output",
        "json",
    )
    assert code == 0
    recs = records(out)
    # The human's node is in the "before" graph; the optimizer removing it is the change.
    assert recs[-1]["before"]["nodes"] == 8
    changes = {r["id"]: r["by"] for r in recs if r["type"] == "change" and r["target"] == "node"}
    assert changes == {"unused": ["prune-dead"], "extra": ["prune-dead"]}


def test_an_unknown_pass_is_a_diagnostic(sync: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "explain", str(sync), "--passes", "prune-ded")
    assert code == 1 and out == ""
    assert 'unknown pass "prune-ded"' in err


# --- colour ---------------------------------------------------------------------------------


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_terminal_and_never_with_no_color(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert use_color(_Tty()) and not use_color(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_color(_Tty())
    monkeypatch.setenv("NO_COLOR", "")  # no-color.org: only a non-empty value counts
    assert use_color(_Tty())


def test_coloured_text_differs_only_by_escapes(sync: Path) -> None:
    ex = _explain(sync, "verify,fixpoint(prune-dead),parallelize")
    plain, coloured = to_text(ex), to_text(ex, color=True)
    assert "\x1b[32m" in coloured and "\x1b[" not in plain
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == plain


# --- HTML -------------------------------------------------------------------------------------


class Page(HTMLParser):
    """What the tests look at in a page: its SVGs, marked nodes and edges, external links."""

    def __init__(self) -> None:
        super().__init__()
        self.svgs: list[str] = []
        self.nodes: dict[tuple[str, str], set[str]] = {}
        self.edges: dict[tuple[str, str], set[str]] = {}
        self.external: list[str] = []
        self.tables: list[str] = []

    @staticmethod
    def of(text: str) -> Page:
        page = Page()
        page.feed(text)
        page.close()
        return page

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "svg":
            self.svgs.append(a.get("data-graph") or "?")
        if tag == "table":
            self.tables.append(a.get("id") or "?")
        classes = set((a.get("class") or "").split())
        if tag == "g" and "data-node" in a:
            self.nodes[(self.svgs[-1], a["data-node"] or "")] = classes
        if tag == "g" and "data-edge" in a:
            self.edges[(self.svgs[-1], a["data-edge"] or "")] = classes
        for key in ("src", "href"):
            value = a.get(key)
            if value and not value.startswith("#"):
                self.external.append(value)
        if tag == "link":
            self.external.append(str(a))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Fiddle(Pass):
    """Changes the second node and adds one: to see `changed` and `added` highlighted."""

    name: ClassVar[str] = "fiddle"

    def run(self, wf: Workflow, ctx: PassContext) -> Workflow:
        n = wf.nodes[1]
        wf = ctx.rewriter.replace_node(wf, n.id, dataclasses.replace(n, cost_ms=42))
        wf = ctx.rewriter.add_node(wf, FunctionNode(id="fresh", effect=Effect.PURE, fn="m:f"))
        return ctx.rewriter.add_edge(wf, Edge(src=wf.nodes[0].id, dst="fresh"))


def _explain(path: Path, pipeline: str) -> Explanation:
    comp: Compilation = materialize_file(path)
    comp.result = PassPipeline.parse(pipeline, {"fiddle": Fiddle}).run(comp.overlay)
    comp.diagnostics.extend(comp.result.diagnostics)
    return explain(comp, pipeline)


def test_the_page_highlights_what_the_optimizer_changed(sync: Path) -> None:
    ex = _explain(sync, "verify,fixpoint(prune-dead),parallelize,fiddle,verify")
    page = Page.of(to_html(ex))
    assert page.svgs == ["before", "after"]
    assert page.tables == ["remarks", "changes", "passes"]
    assert not page.external
    assert "removed" in page.nodes[("before", "unused")]
    assert ("after", "unused") not in page.nodes
    assert (
        "changed" in page.nodes[("before", "stock")] and "changed" in page.nodes[("after", "stock")]
    )
    assert "added" in page.nodes[("after", "fresh")] and ("before", "fresh") not in page.nodes
    assert "removed" in page.edges[("before", "orders -> stock")]
    assert "added" in page.edges[("after", "orders -> fresh")]
    marked = {k for k, v in page.nodes.items() if v & {"added", "removed", "changed"}}
    assert marked == {
        ("before", "unused"),
        ("before", "stock"),
        ("after", "stock"),
        ("after", "fresh"),
    }
    # The critical path is marked in both graphs.
    assert "crit" in page.nodes[("after", "summary")]


def test_the_page_escapes_what_it_shows(tmp_path: Path) -> None:
    path = tmp_path / "w.aob"
    path.write_text(
        'workflow w {\n  a = function "m:a" { effect: pure }\n'
        '  b = function "m:b" { effect: pure, args: { x: a.value } }\n  a -[when a.n < 3 and a.ok]-> b\n}\n'
    )
    text = to_html(_explain(path, "verify"))
    assert "when a.n &lt; 3 and a.ok" in text and "a.n < 3" not in text
    assert Page.of(text).edges[("before", "a -> b")] == {"edge", "crit"}


def test_layout_puts_every_node_below_its_predecessors() -> None:
    wf = load_text(SYNC, "s.aob")
    lay = layout(wf)
    for e in wf.edges:
        assert lay.slots[e.src].layer < lay.slots[e.dst].layer
    real = [s for s in lay.slots.values() if s.node is not None]
    for a in real:
        for b in real:
            if a is not b and a.layer == b.layer:
                assert abs(a.x - b.x) >= a.width  # no two nodes overlap
    assert all(0 <= s.x <= lay.width for s in lay.slots.values())


# --- presets and prune-dead's remark --------------------------------------------------------


def test_every_preset_names_only_registered_passes_and_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    registered = set(available_passes())
    for level, text in PRESETS.items():
        assert {s.name for s in walk(parse_pipeline(text))} <= registered, level
        PassPipeline.parse(text)
        code, out, _ = cli(capsys, "explain", str(EXAMPLES[0]), f"-{level}", "--output", "json")
        assert code == 0 and records(out)[0]["pipeline"] == text


def test_prune_dead_says_why_an_unread_effect_stays() -> None:
    wf = load_text(
        """
        workflow w {
          output r = a.value
          a = function "m:a" { effect: pure }
          get = http GET "https://api.example.com/x" { effect: idempotent }
          send = function "m:send" { effect: effectful, args: { v: a.value } }
          a -> send
        }
        """,
        "w.aob",
    )
    ctx = PassContext(DiagnosticEngine())
    PruneDeadPass().run(wf, ctx)
    missed = {r.nodes: r.message for r in ctx.remarks if r.kind == "missed"}
    assert missed == {
        ("get",): 'kept "get": nothing reads its output, but it is idempotent and its effect is '
        "observable; prune-dead{aggressive=true} removes unread safe requests",
        ("send",): 'kept "send": nothing reads its output, but it is effectful and its effect is '
        "observable",
    }
    aggressive = PassContext(DiagnosticEngine())
    PruneDeadPass(aggressive=True).run(wf, aggressive)
    assert [r.nodes for r in aggressive.remarks if r.kind == "missed"] == [("send",)]


def test_json_lines_are_one_record_per_line(sync: Path) -> None:
    text = to_json_lines(_explain(sync, "verify,fixpoint(prune-dead),parallelize"))
    assert text.endswith("\n") and all(line.startswith("{") for line in text.splitlines())


@dataclasses.dataclass(frozen=True, kw_only=True)
class Crash(Pass):
    name: ClassVar[str] = "crash"

    def run(self, wf: Workflow, ctx: PassContext) -> Workflow:
        raise RuntimeError("boom")


def test_a_failed_pipeline_is_reported_up_to_the_failure(sync: Path) -> None:
    comp = materialize_file(sync)
    comp.result = PassPipeline.parse("prune-dead,crash,parallelize", {"crash": Crash}).run(
        comp.overlay
    )
    comp.diagnostics.extend(comp.result.diagnostics)
    ex = explain(comp, "prune-dead,crash,parallelize")
    assert not ex.ok and [r.name for r in ex.runs] == ["prune-dead"]
    assert "(failed)" in to_text(ex)
    assert records(to_json_lines(ex))[0]["ok"] is False
    assert "node unused removed" in to_text(ex)
