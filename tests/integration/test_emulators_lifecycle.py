"""The emulators never outlive the process that started them (issue 27: a closed terminal or a
killed host left Azurite and the Cosmos server holding their ports)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import APP_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

STARTER = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from devhost.emulators import Emulators
with Emulators.start(Path({data!r})) as emulators:
    print(json.dumps([p.pid for p in emulators.processes]), flush=True)
    time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead, only not reaped yet
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGHUP])
def test_the_emulators_stop_when_their_starter_dies(how: signal.Signals, tmp_path) -> None:  # noqa: ANN001
    starter = subprocess.Popen([sys.executable, "-c", STARTER.format(root=str(APP_ROOT), data=str(tmp_path))],
                               stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        pids = json.loads(starter.stdout.readline())  # type: ignore[union-attr]
        assert pids and all(alive(pid) for pid in pids)
        os.kill(starter.pid, how)
        starter.wait(timeout=30)
        deadline = time.monotonic() + 20
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(alive(pid) for pid in pids), f"still running after {how.name}: {pids}"
    finally:
        if starter.poll() is None:
            os.killpg(starter.pid, signal.SIGKILL)
