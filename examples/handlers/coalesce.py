"""The vision's coalescing example: parsing two fetched pages and merging their records."""

from __future__ import annotations

from typing import Any


def parse(inputs: dict[str, Any]) -> dict[str, Any]:
    page = inputs.get("page") or {}
    items = [
        {"id": str(x.get("id")), "name": x.get("name", "")}
        for x in page.get("records", [])
        if x.get("id") is not None
    ]
    return {"items": items, "count": len(items)}


def merge(inputs: dict[str, Any]) -> dict[str, Any]:
    seen: dict[str, dict[str, Any]] = {}
    for record in [*(inputs.get("a") or []), *(inputs.get("b") or [])]:
        seen.setdefault(record["id"], record)
    return {"items": list(seen.values()), "count": len(seen)}
