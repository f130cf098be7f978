"""Lead enrichment: parsing a CRM page, scoring leads, archiving the ones not published."""

from __future__ import annotations

from typing import Any


def parse_page(inputs: dict[str, Any]) -> dict[str, Any]:
    page = inputs.get("page") or {}
    leads = [
        {
            "id": str(x.get("id")),
            "name": x.get("name", ""),
            "domain": x.get("domain", ""),
            "size": int(x.get("size", 0)),
        }
        for x in page.get("leads", [])
        if x.get("domain")
    ]
    return {"leads": leads, "count": len(leads)}


def score(inputs: dict[str, Any]) -> dict[str, Any]:
    leads = inputs.get("leads") or []
    firmo = inputs.get("firmographics") or []
    scored = []
    for lead, extra in zip(leads, firmo + [None] * (len(leads) - len(firmo)), strict=False):
        employees = ((extra or {}).get("body") or {}).get("employees", lead.get("size", 0))
        scored.append({**lead, "score": round(min(1.0, employees / 1000), 3)})
    scored.sort(key=lambda x: -x["score"])
    return {"leads": scored, "best": scored[0]["score"] if scored else 0.0}


def archive(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"archived": len(inputs.get("leads") or []), "key": ctx.idempotency_key}
