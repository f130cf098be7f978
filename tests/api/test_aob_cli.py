"""`aob` as a command: one-line errors and exit codes (server down, bad token, refusals,
usage), `--json`, colour only on a terminal, and a `--help` that imports nothing heavy."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

from apiserver import BIN, GATE, Server, deploy


def aob(
    *args: str, server: str, token: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("AOB_")}
    e |= {"AOB_SERVER": server, **({"AOB_TOKEN": token} if token else {}), **(env or {})}
    return subprocess.run(
        [str(BIN / "aob"), *args], capture_output=True, text=True, env=e, timeout=60
    )


def one_line_error(out: subprocess.CompletedProcess[str], code: str) -> str:
    assert out.returncode == 1, out
    first = out.stderr.splitlines()[0]
    assert first.startswith("aob: error: ") and first.endswith(f"[{code}]"), out.stderr
    assert "Traceback" not in out.stderr
    return first


def test_help_is_quick_because_it_imports_nothing_heavy() -> None:
    probe = (
        "import sys, contextlib, io\n"
        "from aobc.aob import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    code = main(['--help'])\n"
        "heavy = [m for m in ('httpx', 'aobc.runtime', 'aobc.api', 'aobc.diagnostics', 'json')\n"
        "         if m in sys.modules]\n"
        "print(code, heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0 []"


def test_server_down_is_a_one_line_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    for args in (("run", "list"), ("logs", "stream", "r-1"), ("approvals", "list", "--json")):
        line = one_line_error(aob(*args, server=url), "server-unreachable")
        assert url in line


def test_auth_and_refusals_are_one_line_errors(server: Server, tmp_path: Path) -> None:
    url = server.url
    one_line_error(aob("run", "list", server=url), "unauthorized")
    one_line_error(aob("run", "list", server=url, token="aob_wrong"), "unauthorized")
    line = one_line_error(
        aob("run", "start", "gate", server=url, token=server.tokens["viewer"]), "forbidden"
    )
    assert "operator" in line
    one_line_error(
        aob("run", "show", "r-nope", server=url, token=server.tokens["viewer"]), "not-found"
    )
    bad = tmp_path / "bad.aob"
    bad.write_text('workflow w {\n  a = function "apifns:echo" { effect: pure }\n  a -> b\n}\n')
    out = aob("workflow", "validate", str(bad), server=url, token=server.tokens["viewer"])
    one_line_error(out, "undefined-node")
    assert "bad.aob:3:" in out.stderr
    usage = aob("approve", "t-1", "maybe", server=url)
    assert usage.returncode == 2 and "[usage]" in usage.stderr
    missing = aob(
        "run", "start", str(tmp_path / "nope.json"), server=url, token=server.tokens["admin"]
    )
    one_line_error(missing, "not-found")  # not a file: taken as a workflow name


def test_a_refused_patch_shows_its_diagnostics(server: Server, tmp_path: Path) -> None:
    admin = server.tokens["admin"]
    with server.client() as c:
        deploy(c, GATE, "gate")
    started = aob("run", "start", "gate", "--json", server=server.url, token=admin)
    run_id = json.loads(started.stdout)["id"]
    patch = tmp_path / "p.json"
    patch.write_text(json.dumps([{"op": "remove", "path": "/nodes/7"}]))
    out = aob("patch", "propose", run_id, str(patch), server=server.url, token=admin)
    one_line_error(out, "patch-index")
    assert "#/0" in out.stderr or "/nodes/7" in out.stderr
    listed = aob("patch", "list", run_id, "--json", server=server.url, token=admin)
    assert json.loads(listed.stdout) == []


def test_colour_only_on_a_terminal_and_never_with_no_color(server: Server) -> None:
    admin = server.tokens["admin"]
    with server.client() as c:
        deploy(c, GATE, "gate")

    def on_tty(env: dict[str, str]) -> str:
        leader, follower = pty.openpty()
        e = {**os.environ, "AOB_SERVER": server.url, "AOB_TOKEN": admin, "TERM": "xterm", **env}
        e.pop("NO_COLOR", None) if "NO_COLOR" not in env else None
        proc = subprocess.Popen(
            [str(BIN / "aob"), "run", "start", "gate"], stdout=follower, stderr=follower, env=e
        )
        os.close(follower)
        chunks = []
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(30)
        os.close(leader)
        return b"".join(chunks).decode()

    assert "\x1b[1m" in on_tty({})
    assert "\x1b[" not in on_tty({"NO_COLOR": "1"})
    piped = aob("run", "start", "gate", server=server.url, token=admin)
    assert piped.returncode == 0 and "\x1b[" not in piped.stdout


def test_server_and_token_flags_win_over_the_environment(server: Server) -> None:
    viewer = server.tokens["viewer"]
    flags = ("--server", server.url, "--token", viewer)
    for args in ((*flags, "run", "list", "--json"), ("run", "list", *flags, "--json")):
        out = aob(*args, server="http://127.0.0.1:9", token="aob_wrong")
        assert out.returncode == 0, out.stderr
        assert isinstance(json.loads(out.stdout), list)
