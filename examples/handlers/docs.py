"""Document pipeline steps: plain-text stand-ins for OCR and entity extraction."""

from __future__ import annotations

import re
from typing import Any


def ocr(inputs: dict[str, Any]) -> dict[str, Any]:
    blob = inputs.get("blob")
    return {"text": blob if isinstance(blob, str) else str((blob or {}).get("text", ""))}


def clean(inputs: dict[str, Any]) -> dict[str, Any]:
    return {"text": " ".join(str(inputs.get("text", "")).split())}


def extract_entities(inputs: dict[str, Any]) -> dict[str, Any]:
    words = re.findall(r"\b[A-Z][a-z]+(?:\s[A-Z][a-z]+)*\b", str(inputs.get("text", "")))
    return {"entities": sorted(set(words))}


def index(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"count": len(inputs.get("docs") or []), "key": ctx.idempotency_key}


def stats(inputs: dict[str, Any]) -> dict[str, Any]:
    docs = inputs.get("docs") or []
    return {
        "counts": {
            "documents": len(docs),
            "entities": sum(len(d.get("entities", [])) for d in docs),
        }
    }


def summarize(inputs: dict[str, Any]) -> dict[str, Any]:
    counts = inputs.get("stats") or {}
    documents, entities = counts.get("documents", 0), counts.get("entities", 0)
    return {"text": f"{documents} documents, {entities} entities, {inputs.get('indexed')} indexed"}
