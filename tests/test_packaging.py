"""A non-editable install works on its own: the wheel carries the grammar and the CLI runs."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_finds_its_grammar(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(dist),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("aobc-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "--quiet", str(wheel)], check=True, capture_output=True
    )
    # Run from an empty directory, so nothing from the checkout can be imported by accident.
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    example = ROOT / "examples" / "lead_enrichment.aob"
    out = subprocess.run(
        [str(env_dir / "bin" / "aobc"), "validate", str(example)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    probe = subprocess.run(
        [str(py), "-c", "import aobc, aobc.grammar, aobc.runtime; print(aobc.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert probe.returncode == 0, probe.stderr
    assert str(env_dir) in probe.stdout
    # The packaged WebAssembly passes and the pass kit's files ship, so neither running the
    # plugins nor `aobc pass new` needs a checkout or a toolchain.
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in (
        "aobc/wasm_passes/prune_dead.wasm",
        "aobc/wasm_passes/cse.wasm",
        "aobc/wasm_passes/ABI.md",
        "aobc/wasm_passes/src/aobc_pass.zig",
        "aobc/wasm_passes/src/aobc_pass.h",
        "aobc/kit/templates/zig/src/__ident__.zig.tmpl",
        "aobc/kit/templates/c/src/__ident__.c.tmpl",
        "aobc/kit/templates/python/src/__ident__/__init__.py.tmpl",
        "aobc/kit/templates/python/tests/__ident__.test.tmpl",
    ):
        assert shipped in names, shipped
