"""The IR extensions optimization passes produce: HTTP batches, declared filters, cache
marks and cost hints; the standard filter function; and rewriting what nodes read."""

from __future__ import annotations

import pytest

from aobc.backend.serialize import to_document
from aobc.errors import FrontendError
from aobc.frontend import load_text
from aobc.frontend.jsonpatch import apply_ops
from aobc.frontend.printer import to_dsl
from aobc.passes.rewriter import Rewriter
from aobc.passes.subst import ref
from aobc.stdlib import filter as std_filter

BATCH = """
workflow b {
  input q: str
  f = http BATCH "https://api.example.com" {
    effect: idempotent
    requests: [
      { method: "GET", url: "https://api.example.com/a" },
      { method: "get", url: "https://api.example.com/b?x=${inputs.q}" },
    ]
    cost: 200ms
    cache: { key: ["inputs.q"] }
  }
  s = http GET "https://api.example.com/items" { effect: idempotent, filter: { param: "where", items: "body.items" } }
}
"""


def test_batches_filters_cache_and_cost_round_trip() -> None:
    wf = load_text(BATCH)
    f, s = wf.nodes
    assert f.method == "BATCH"  # type: ignore[attr-defined]
    assert [r["method"] for r in f.requests] == ["GET", "GET"]  # type: ignore[attr-defined]
    assert f.cost_ms == 200
    assert f.cache == {"key": ("inputs.q",)}
    assert s.filter == {"param": "where", "items": "body.items"}  # type: ignore[attr-defined]
    assert load_text(to_dsl(wf)) == wf


@pytest.mark.parametrize(
    ("fragment", "message"),
    [
        ('http BATCH "https://api.example.com" { effect: idempotent }', 'needs "requests"'),
        (
            'http GET "https://api.example.com" { effect: idempotent, requests: [] }',
            "belongs to a BATCH",
        ),
        (
            'http BATCH "https://api.example.com" { effect: idempotent, '
            'requests: [{ method: "BATCH", url: "https://api.example.com/x" }] }',
            "cannot hold a batch",
        ),
    ],
)
def test_batch_rules(fragment: str, message: str) -> None:
    with pytest.raises(FrontendError) as err:
        load_text(f"workflow w {{ a = {fragment} }}")
    assert message in " ".join(d.message for d in err.value.diagnostics)


def test_batch_requests_must_share_the_origin() -> None:
    from aobc.passes.verify import verify
    from aobc.policy import DEFAULT_POLICY

    wf = load_text(
        'workflow w { a = http BATCH "https://api.example.com" { effect: idempotent, '
        'requests: [{ method: "GET", url: "https://other.example.com/x" }] } }'
    )
    assert any("not to the batch's origin" in d.message for d in verify(wf, DEFAULT_POLICY))


def test_stdlib_filter() -> None:
    items = [{"s": 1}, {"s": 5}, {"s": 9}]
    assert std_filter({"items": items, "where": "item.s > 2"}) == [{"s": 5}, {"s": 9}]
    assert std_filter({"items": None, "where": "true"}) == []


def test_rewrite_reads_everywhere_with_the_patch_law() -> None:
    wf = load_text(
        """
        workflow w {
          output o = b.value
          a = function "m:a" { effect: pure }
          b = function "m:b" { effect: pure, args: { x: a.value, y: "n=${a.n}" } }
          m = map a.items { body: function "m:c" { effect: pure, args: { z: a.k } } }
          a -[when a.ok]-> b
          a -> m
        }
        """
    )
    r = Rewriter()
    out = r.rewrite_reads(wf, {"a": ref("batch", 0, "body")})
    text = to_dsl(out)
    assert "a.value" not in text
    assert "batch[0].body.value" in text
    assert "${batch[0].body.n}" in text
    assert "map batch[0].body.items" in text
    assert "when batch[0].body.ok" in text
    assert apply_ops(to_document(wf), r.ops) == to_document(out)
