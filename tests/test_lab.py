"""`make lab` as a learner uses it: the printed URL opens the course; stopping leaves nothing."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
URL = re.compile(r"http://127\.0\.0\.1:(\d+)/lab\?token=([0-9A-Za-z_-]+)")


def _status(port: int, token: str | None) -> int:
    url = f"http://127.0.0.1:{port}/api/status" + (f"?token={token}" if token else "")
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def _marked_pids(marker: str) -> list[int]:
    """Processes (the server, its kernels, make) that inherited our marker variable."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if f"COURSE_LAB_TEST={marker}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def _start(env_extra: dict[str, str]) -> tuple[subprocess.Popen, str, list[str]]:
    marker = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if k != "JUPYTER_TOKEN"}
    env.update(env_extra, COURSE_LAB_TEST=marker)
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "lab"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if URL.search(line):
            return proc, marker, lines
    _stop(proc, marker)
    pytest.fail("make lab printed no URL within 120 s:\n" + "".join(lines))


def _stop(proc: subprocess.Popen, marker: str) -> list[int]:
    """Ctrl-C, as a learner would; return the processes still alive 90 s later (a loaded CI box is slow)."""
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + 60
    while _marked_pids(marker) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = _marked_pids(marker)
    for pid in left:  # never leave a server behind, even when the test fails
        os.kill(pid, signal.SIGKILL)
    return left


@pytest.mark.timeout(240)
def test_make_lab_prints_a_url_that_opens_the_course() -> None:
    # occupy a port and ask for it: the URL must name the port the server really bound
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        proc, marker, lines = _start({"JUPYTER_PORT": str(taken)})
        try:
            port_s, token = URL.search(lines[-1]).groups()
            port = int(port_s)
            assert port != taken
            assert re.fullmatch(r"[0-9a-f]{48}", token), token  # a fresh random token
            assert lines[-1].strip() == f"http://127.0.0.1:{port}/lab?token={token}"
            assert _status(port, token) == 200
            assert _status(port, None) == 403
            assert _status(port, "wrong" + token) == 403
        finally:
            left = _stop(proc, marker)
    assert left == [], f"processes left behind: {left}"
    assert _status_closed(port)


def _status_closed(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.timeout(240)
def test_make_lab_uses_jupyter_token_when_set() -> None:
    chosen = "course" + uuid.uuid4().hex
    proc, marker, lines = _start({"JUPYTER_TOKEN": chosen})
    try:
        port_s, token = URL.search(lines[-1]).groups()
        assert token == chosen
        assert _status(int(port_s), token) == 200
    finally:
        left = _stop(proc, marker)
    assert left == []
