"""The README's quick start as a newcomer runs it (issue 27): `make start`'s command on this clone,
then every command of the quick-start block in order, each output checked against the output the
README shows under it.

It runs what `make start` runs (``python -m devhost.start --devhost``) on the default ports, with
local.settings.json written from the example, as on a fresh clone. So it runs only where that is
true (CI, a fresh clone): with local.settings.json already there, or a default port in use (your
own `make start`), it is skipped and says why.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import APP_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

DEFAULT_PORTS = (7071, 7090, 8081, 10000, 10001, 10002)
README = APP_ROOT / "README.md"


def quick_start_steps() -> list[tuple[str, str | None]]:
    """The quick start's commands, each with the output the README shows under it (or None)."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Quick start"):]
    block = section[section.index("```bash") + len("```bash"):]
    block = block[: block.index("```")]
    steps: list[tuple[str, str | None]] = []
    pending = ""
    for line in block.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("# {") and steps:
            steps[-1] = (steps[-1][0], stripped[2:])
            continue
        if stripped.startswith("#"):
            continue
        pending += stripped[:-1] + " " if stripped.endswith("\\") else stripped
        if not stripped.endswith("\\"):
            steps.append((pending, None))
            pending = ""
    return steps


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def last_json(output: str) -> Any:
    """The JSON document a command printed (after any progress lines)."""
    lines = output.splitlines(keepends=True)
    for index, line in enumerate(lines):
        if line.startswith("{"):
            try:
                return json.loads("".join(lines[index:]))
            except ValueError:
                continue
    raise AssertionError(f"no JSON document in:\n{output}")


def matches(expected: str, printed: Any) -> bool:
    """The README's shown output against what was printed: exact, or, where the README elides with
    ``...``, every ``"key": value`` it shows."""
    if "..." not in expected:
        return bool(json.loads(expected) == printed)
    text = json.dumps(printed, separators=(",", ":"))
    return all(re.search(re.escape(fragment.replace('": ', '":')) + r"[,}\]]", text)
               for fragment in re.findall(r'"\w+": (?:"[^"]*"|-?\d+)', expected))


def test_the_readmes_quick_start_works_as_shown_on_a_fresh_clone(tmp_path: Path) -> None:
    settings = APP_ROOT / "local.settings.json"
    if settings.exists():
        pytest.skip("local.settings.json exists: the newcomer path runs on a fresh clone (CI); yours is left alone")
    busy = [port for port in DEFAULT_PORTS if port_in_use(port)]
    if busy:
        pytest.skip(f"ports {busy} are in use (your own make start?): the newcomer path needs the default ports")
    steps = quick_start_steps()
    assert len(steps) >= 8, steps
    emulators_existed = (APP_ROOT / ".emulators").exists()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTH_", "API_KEY", "COSMOS_", "ETL_"))}
    host = subprocess.Popen([sys.executable, "-m", "devhost.start", "--devhost"], cwd=APP_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    log: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while True:
            line = host.stdout.readline()  # type: ignore[union-attr]
            assert line or host.poll() is None, "make start exited:\n" + "".join(log)
            log.append(line)
            if "listening on http://localhost:7071" in line:
                break
            assert time.monotonic() < deadline, "make start did not listen within 120 s:\n" + "".join(log)
        script_env = {**env, "PATH": f"{APP_ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}"}
        variables: dict[str, str] = {}
        for command, shown in steps:
            assignment = re.fullmatch(r"(\w+)=\$\((.*)\)", command)
            run = assignment.group(2) if assignment else command
            done = subprocess.run(["bash", "-c", run], cwd=APP_ROOT, env={**script_env, **variables},
                                  capture_output=True, text=True, timeout=240)
            assert done.returncode == 0, f"{command}\n{done.stdout}{done.stderr}"
            if assignment:
                variables[assignment.group(1)] = done.stdout.strip()
                continue
            if shown is not None:
                assert matches(shown, last_json(done.stdout)), f"{command}\nshown: {shown}\nprinted: {done.stdout}"
    finally:
        if host.poll() is None:
            os.killpg(host.pid, signal.SIGINT)
        try:
            rest, _ = host.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(host.pid, signal.SIGKILL)
            rest, _ = host.communicate()
        log.append(rest or "")
        settings.unlink(missing_ok=True)  # leave the clone as it was found
        for generated in (APP_ROOT / "samples").glob("generated-*.jsonl"):
            generated.unlink()
        if not emulators_existed:
            shutil.rmtree(APP_ROOT / ".emulators", ignore_errors=True)
    output = "".join(log)
    assert host.returncode == 0, output
    assert "Traceback" not in output, output
    assert not [port for port in DEFAULT_PORTS if port_in_use(port)], "make start left a port open"
