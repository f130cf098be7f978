"""Nightly report rendering."""

from __future__ import annotations

import html
from typing import Any


def render(inputs: dict[str, Any]) -> dict[str, Any]:
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(inputs.get(k)))}</td></tr>"
        for k in ("sales", "traffic", "churn")
    )
    return {"html": f"<h1>Report {html.escape(str(inputs.get('date')))}</h1><table>{rows}</table>"}
