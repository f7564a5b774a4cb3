"""`make lab`: start JupyterLab on 127.0.0.1 and print the one URL that opens the course.

Jupyter Server 2.x masks a token given on the command line (it logs ``?token=...``), so this
launcher prints the real URL itself, with the port the server actually bound (read from the
server's runtime file ``jpserver-<pid>.json``), once the server answers.

    python scripts/lab.py [--port N] [extra jupyter lab arguments...]

The token is ``$JUPYTER_TOKEN`` when set, else a fresh random one per start. ``--allow-root``
is added only when running as root. Ctrl-C (or SIGTERM) stops the server and its kernels.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 120.0


def lab_url(port: int, token: str) -> str:
    """The URL a learner pastes: JupyterLab on 127.0.0.1 with the token."""
    return f"http://127.0.0.1:{port}/lab?token={token}"


def runtime_dir(python: str) -> Path:
    out = subprocess.run(
        [python, "-c", "from jupyter_core.paths import jupyter_runtime_dir as d; print(d())"],
        check=True, capture_output=True, text=True,
    )
    return Path(out.stdout.strip())


def bound_port(info_file: Path) -> int | None:
    """The port from the server's runtime file, or None while it is not written yet."""
    try:
        return int(json.loads(info_file.read_text())["port"])
    except (OSError, ValueError, KeyError):
        return None


def answers(port: int, token: str) -> bool:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/status", headers={"Authorization": f"token {token}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def main(argv: list[str]) -> int:
    python = sys.executable
    token = os.environ.get("JUPYTER_TOKEN") or secrets.token_hex(24)
    cmd = [
        python, "-m", "jupyterlab", "--ip=127.0.0.1", "--no-browser",
        f"--IdentityProvider.token={token}", "--ServerApp.log_level=WARN",
    ]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    cmd += argv
    rdir = runtime_dir(python)
    # the server runs in its own process group so that stopping it also stops its kernels
    proc = subprocess.Popen(cmd, cwd=ROOT / "notebooks", start_new_session=True)

    def stop() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the clean-up
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            except ProcessLookupError:
                pass
        # kernels the server started share its process group; make sure none outlives it
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def on_signal(signum: int, _frame: object) -> None:
        raise SystemExit(0)  # unwinds to the `finally` below, which stops the server

    # Ctrl-C must stop the server even if our parent started us with SIGINT ignored (an inherited
    # SIG_IGN makes Python skip its KeyboardInterrupt handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        info_file = rdir / f"jpserver-{proc.pid}.json"
        deadline = time.monotonic() + START_TIMEOUT_S
        port = None
        while time.monotonic() < deadline and proc.poll() is None:
            port = port or bound_port(info_file)
            if port and answers(port, token):
                break
            time.sleep(0.2)
        else:
            stop()
            print(f"JupyterLab did not start within {START_TIMEOUT_S:.0f} s (exit code {proc.returncode}); "
                  "see the messages above.", file=sys.stderr)
            return 1
        print("\nJupyterLab is running. Open this URL in your browser (Ctrl-C here stops it):\n", flush=True)
        print(f"    {lab_url(port, token)}\n", flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
