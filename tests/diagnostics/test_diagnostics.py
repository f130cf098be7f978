"""Bad inputs with their expected diagnostics written inline, mypy style.

A DSL case marks the line a diagnostic points at with a comment:

    b = function "nocolon" { effect: pure }   # E: [invalid-value] module:function

`E:` is an error and `W:` a warning; the text after the code must occur in the message. A
JSON case (`x.json`) lists its expectations in `x.json.expect`, one per line:
`E /nodes/0/url [ssrf] loopback`. A case may bring a policy (`x.policy.toml`) and patches
(`x.patch*.json`, applied in name order). Every expected diagnostic must be reported, and
nothing else: the test fails on a missing and on an unexpected diagnostic alike.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aobc.diagnostics import Diagnostic
from aobc.driver import compile_file
from aobc.errors import AobcError
from aobc.policy import DEFAULT_POLICY, Policy
from aobc.source import JsonLoc, Span

CASES = Path(__file__).parent / "cases"
_INLINE = re.compile(r"#\s*([EW]):\s*\[([a-z0-9-]+)\]\s*([^#]*)")
Expect = tuple[str, str, str, str]  # (severity, where, code, message part)


def _cases() -> list[Path]:
    return sorted(
        p for p in CASES.iterdir() if p.suffix in (".aob", ".json") and ".patch" not in p.name
    )


def _expected(case: Path) -> list[Expect]:
    out: list[Expect] = []
    if case.suffix == ".aob":
        for lineno, line in enumerate(case.read_text().splitlines(), 1):
            for sev, code, text in _INLINE.findall(line):
                out.append((sev, str(lineno), code, text.strip()))
    sidecar = Path(f"{case}.expect")
    if sidecar.exists():
        for line in sidecar.read_text().splitlines():
            if line.strip():
                sev, where, code, *rest = line.split(maxsplit=3)
                out.append((sev, where, code.strip("[]"), rest[0] if rest else ""))
    return out


def _where(d: Diagnostic, case: Path) -> str:
    if isinstance(d.loc, Span) and Path(d.loc.file).name == case.name:
        return str(d.loc.line)
    if isinstance(d.loc, JsonLoc):
        name = Path(d.loc.file).name
        return d.loc.pointer if name == case.name else f"{name}#{d.loc.pointer}"
    return "?"


def _actual(case: Path) -> list[Diagnostic]:
    policy_file = case.with_suffix(".policy.toml")
    policy = Policy.load(policy_file) if policy_file.exists() else DEFAULT_POLICY
    patches = sorted(CASES.glob(f"{case.stem}.patch*.json"))
    try:
        return compile_file(case, "verify", patches, policy).diagnostics
    except AobcError as err:
        return list(err.diagnostics)


@pytest.mark.parametrize("case", _cases(), ids=lambda p: p.name)
def test_diagnostics(case: Path) -> None:
    expected = _expected(case)
    assert expected, f"{case.name} declares no expected diagnostics"
    actual = [d for d in _actual(case) if d.severity.value in ("error", "warning")]
    unmatched = list(actual)
    missing = []
    for sev, where, code, text in expected:
        hit = next(
            (
                d
                for d in unmatched
                if d.severity.value[0].upper() == sev
                and d.code is not None
                and d.code.name == code
                and _where(d, case) == where
                and text in d.message
            ),
            None,
        )
        if hit is None:
            missing.append(f"{sev} {where} [{code}] {text}")
        else:
            unmatched.remove(hit)
    extra = [f"{d.severity.value} {_where(d, case)} [{d.code}] {d.message}" for d in unmatched]
    assert not missing and not extra, f"missing: {missing}\nunexpected: {extra}"
