"""The pass-authoring kit: `aobc pass new|build|test`, in each language, end to end.

Zig and C projects are compiled for real with the `ziglang` wheel (the dev extra has it),
then loaded by the host and checked by their golden cases and by translation validation.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aobc.cli import main


def aobc(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("lang", ["python", "zig", "c"])
def test_a_new_pass_builds_and_passes_its_own_tests(
    lang: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"kit-{lang}-pass"
    code, out, _ = aobc(capsys, "pass", "new", name, "--lang", lang, "--dir", str(tmp_path))
    assert code == 0 and "aobc pass build" in out
    root = tmp_path / name
    ident = name.replace("-", "_")
    assert (root / "README.md").is_file() and (root / "tests" / f"{ident}.test").is_file()
    if lang == "python":
        pyproject = (root / "pyproject.toml").read_text()
        assert f'{name} = "{ident}:KitPythonPass"' in pyproject  # the aobc.passes entry point
    code, out, err = aobc(capsys, "pass", "build", str(root))
    assert code == 0, err
    assert f"pass {name}" in out
    if lang != "python":
        assert (root / f"{ident}.wasm").read_bytes().startswith(b"\0asm")
    code, out, err = aobc(capsys, "pass", "test", str(root), "--seeds", "4")
    assert code == 0, out + err
    assert "ok   " in out and "translation validation: 4 of 4 generated workflows refine" in out
    assert out.rstrip().endswith("6 passed, 0 failed")


def test_a_wrong_pass_fails_its_goldens_and_gets_a_reduced_counterexample(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aobc(capsys, "pass", "new", "greedy-prune", "--lang", "python", "--dir", str(tmp_path))
    root = tmp_path / "greedy-prune"
    src = root / "src" / "greedy_prune" / "__init__.py"
    # The bug: effects no longer keep a node.
    text = src.read_text()
    assert "n.effect is not Effect.PURE or " in text
    src.write_text(text.replace("n.effect is not Effect.PURE or ", ""))
    code, out, _ = aobc(capsys, "pass", "test", str(root), "--seeds", "10", "--nodes", "12")
    assert code == 1
    assert (
        "FAIL greedy_prune.test::removes_an_unread_pure_leaf: [out], [patch], [remarks] differ"
        in out
    )
    assert "FAIL translation validation, generated workflow" in out
    assert "reduced to " in out and "workflow " in out.split("reduced to ", 1)[1]
    # The reduced counterexample is no larger than the workflow it came from.
    reduced = int(out.split("reduced to ", 1)[1].split(" ", 1)[0])
    assert 1 <= reduced <= 12


def test_update_rewrites_the_golden_sections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aobc(capsys, "pass", "new", "tidy", "--lang", "python", "--dir", str(tmp_path))
    root = tmp_path / "tidy"
    case = root / "tests" / "tidy.test"
    good = case.read_text()
    case.write_text(good.replace('{"op": "remove", "path": "/nodes/1"}', "{}"))
    assert aobc(capsys, "pass", "test", str(root), "--no-tv")[0] == 1
    code, out, _ = aobc(capsys, "pass", "test", str(root), "--update")
    assert code == 0 and "updated" in out
    assert case.read_text() == good
    patch = good.split("[patch]\n", 1)[1].split("\n[", 1)[0].splitlines()
    assert [json.loads(line)["op"] for line in patch] == ["remove", "remove"]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["pass", "new", "MyPass", "--lang", "zig"], "must be kebab-case"),
        (["pass", "new", "cse", "--lang", "c"], '"cse" is already a registered pass'),
        (["pass", "build"], "no aobc-pass.toml"),
        (["pass", "test"], "no aobc-pass.toml"),
    ],
)
def test_mistakes_are_diagnostics_not_tracebacks(
    argv: list[str],
    words: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = aobc(capsys, *argv)
    assert code == 1 and words in err and "Traceback" not in err
    assert "[usage]" in err


def test_new_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "mine").mkdir()
    code, _, err = aobc(capsys, "pass", "new", "mine", "--lang", "c", "--dir", str(tmp_path))
    assert code == 1 and "already exists" in err
    assert not list((tmp_path / "mine").iterdir())


def test_a_c_pass_that_does_not_compile_reports_the_compiler(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aobc(capsys, "pass", "new", "broken", "--lang", "c", "--dir", str(tmp_path))
    root = tmp_path / "broken"
    src = root / "src" / "broken.c"
    src.write_text(src.read_text() + "\nthis is not C;\n")
    code, _, err = aobc(capsys, "pass", "build", str(root))
    assert code == 1 and "zig could not build broken.c" in err and "error" in err
