"""Harness for the real-browser widget tests: a JupyterLab server and a page driver.

The server is started the way `make lab` starts it (127.0.0.1, a token, `--allow-root` when
root), on a free port with a random token, serving a *temporary copy* of `notebooks/`, so the
repository's notebooks are never written. Chromium is Debian's `/usr/bin/chromium` driven by
Playwright for Python (`.ci/install_browser.sh` installs it); without it every test here skips.
Screenshots and the server log go to `artifacts/browser/` (git-ignored; override with
`COURSE_BROWSER_ARTIFACTS`). The server and every process under it are stopped by process id.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
CHROMIUM = Path(os.environ.get("COURSE_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("COURSE_BROWSER_ARTIFACTS", REPO / "artifacts" / "browser"))
# Flags for a root, offline, headless run: without the background-networking ones Chromium keeps
# trying to reach Google's hosts through a closed network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
SERVER_START_S = 60.0  # bound on JupyterLab answering /api/status
STOP_S = 15.0  # bound on a graceful server stop before SIGKILL
UI_TIMEOUT_MS = 30_000  # default bound for any single browser wait
# Text that JupyterLab / the widget manager shows instead of a working widget.
WIDGET_FAILURE_TEXT = (
    "Loading widget",
    "Error displaying widget",
    "Failed to load model class",
    "Open Browser Console for more detailed log",
)


# --------------------------------------------------------------------------- the server


@dataclass
class LabServer:
    """A running JupyterLab: its URL, token, served root and process."""

    url: str
    token: str
    root: Path
    proc: subprocess.Popen
    log_path: Path

    def api(self, method: str, path: str, timeout: float = 10.0) -> object:
        """Call the server's REST API with the token; returns parsed JSON (or None)."""
        req = urllib.request.Request(
            f"{self.url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def shutdown_kernels(self) -> None:
        """Shut every kernel down through the API (bounded; best effort)."""
        with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
            for kernel in self.api("GET", "/api/kernels"):  # type: ignore[union-attr]
                with contextlib.suppress(OSError, urllib.error.URLError):
                    self.api("DELETE", f"/api/kernels/{kernel['id']}", timeout=STOP_S)

    def stop(self) -> None:
        """Stop the server and every process it started (kernels, their workers), by pid."""
        import psutil  # IPython depends on it, so it is in the course environment

        try:
            descendants = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            descendants = []
        self.shutdown_kernels()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: pgid == pid
            try:
                self.proc.wait(timeout=STOP_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=STOP_S)
        # Kernels run in sessions of their own; anything still alive is killed by its pid.
        _, alive = psutil.wait_procs(descendants, timeout=STOP_S)
        for p in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        psutil.wait_procs(alive, timeout=STOP_S)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _copy_notebooks(dest: Path) -> None:
    shutil.copytree(
        NOTEBOOKS, dest, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__")
    )


def start_lab(workdir: Path) -> LabServer:
    """Start JupyterLab like `make lab` on a copy of notebooks/ and wait (bounded) until it answers."""
    root = workdir / "notebooks"
    _copy_notebooks(root)
    # No news or update checks: they need the network and their toasts can cover the page.
    user_settings = {
        "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    }
    for name, values in user_settings.items():
        path = workdir / "user-settings" / "@jupyterlab" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port, token = _free_port(), secrets.token_hex(24)
    cmd = [
        sys.executable, "-m", "jupyterlab",
        "--ip=127.0.0.1", "--no-browser", f"--port={port}", "--ServerApp.port_retries=0",
        f"--ServerApp.token={token}", "--ServerApp.open_browser=False",
        f"--ServerApp.root_dir={root}",
        # Galata (JupyterLab's own Playwright harness) drives Lab through this same handle.
        "--LabApp.expose_app_in_browser=True",
        # Keep Lab's per-user state out of the home directory.
        f"--LabApp.workspaces_dir={workdir / 'workspaces'}",
        f"--LabApp.user_settings_dir={workdir / 'user-settings'}",
    ]  # fmt: skip
    if os.name == "posix" and os.getuid() == 0:
        cmd.append("--allow-root")
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(workdir / "runtime"), PYTHONUNBUFFERED="1")
    log_path = workdir / "jupyter-server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = LabServer(f"http://127.0.0.1:{port}", token, root, proc, log_path)
    deadline = time.monotonic() + SERVER_START_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(
                f"JupyterLab exited with code {proc.returncode}:\n{server.log_tail()}"
            )
        try:
            server.api("GET", "/api/status", timeout=2.0)
            return server
        except (OSError, urllib.error.URLError, ValueError):
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(
                f"JupyterLab did not answer within {SERVER_START_S:.0f} s:\n{server.log_tail()}"
            )
        time.sleep(0.25)


# --------------------------------------------------------------------------- the page driver


class WidgetCheckFailed(AssertionError):
    """A widget did not render or react as expected in the browser."""


@dataclass
class LabPage:
    """Drives one notebook in JupyterLab the way a learner does: run, look, move a control."""

    page: object  # playwright.sync_api.Page
    server: LabServer
    name: str
    console: list[str] = field(default_factory=list)
    shots: int = 0

    # ---- navigation and running

    def open(self, notebook: str) -> None:
        """Open `notebook` (a file in notebooks/) with a fresh workspace; wait for its kernel."""
        self.page.goto(f"{self.server.url}/lab/tree/{notebook}?reset&token={self.server.token}")
        self.page.wait_for_function(
            """(name) => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
                return !!(w && w.context && w.context.path === name && w.sessionContext); }""",
            arg=notebook,
        )
        self.page.evaluate(
            """async () => { const w = window.jupyterapp.shell.currentWidget;
                await w.context.ready; await w.sessionContext.ready; }"""
        )

    def run_through(
        self,
        marker: str,
        timeout_s: float,
        section: str | None = None,
        prelude: tuple[str, ...] = ("helpers.setup(",),
    ) -> int:
        """Run the cells a learner runs to reach the widget, one after the other, in Lab.

        The widget's cell is the first code cell containing `marker` whose stored outputs hold
        a widget view (else the first containing `marker`). Without `section`, every cell from
        the top through it runs. With `section`, only the `prelude` cells (the first code cell
        containing each string: by default the start-up cell) and the cells from the first one
        containing `section` through the widget run: for a lesson whose earlier cells are long
        measurements the widget does not need. Returns the widget cell's index; fails at once,
        with the error, if a cell raises.
        """
        found = self.page.evaluate(
            """([marker, section, prelude]) => {
                const app = window.jupyterapp, nb = app.shell.currentWidget.content;
                const WIDGET = 'application/vnd.jupyter.widget-view+json';
                const code = c => c.model.type === 'code';
                const has = s => c => code(c) && c.model.sharedModel.getSource().includes(s);
                const shows = c => c.model.outputs.toJSON().some(o => o.data && o.data[WIDGET]);
                let idx = nb.widgets.findIndex(c => has(marker)(c) && shows(c));
                if (idx < 0) idx = nb.widgets.findIndex(has(marker));
                if (idx < 0) return {error: `no code cell contains ${JSON.stringify(marker)}`};
                let first = 0, cells = [];
                if (section !== null) {
                    first = nb.widgets.findIndex(has(section));
                    if (first < 0 || first > idx)
                        return {error: `no code cell before the widget contains ${JSON.stringify(section)}`};
                    for (const p of prelude) {
                        const i = nb.widgets.findIndex(has(p));
                        if (i < 0 || i >= first)
                            return {error: `no code cell before the section contains ${JSON.stringify(p)}`};
                        cells.push(i);
                    }
                }
                for (let i = first; i <= idx; i++) if (code(nb.widgets[i])) cells.push(i);
                nb.widgets[idx].node.setAttribute('data-course-cell', 'widget');
                const run = window.__courseRun = {state: 'running', cell: null};
                (async () => {
                    for (const i of cells) {
                        run.cell = i;
                        nb.activeCellIndex = i; nb.deselectAll();
                        const ok = await app.commands.execute('notebook:run-cell');
                        if (ok === false) { run.state = `failed: cell ${i} did not run cleanly`; return; }
                    }
                    run.state = 'done';
                })().catch(e => { run.state = 'failed: ' + e; });
                return {idx, cells}; }""",
            [marker, section, list(prelude)],
        )
        if "error" in found:
            raise WidgetCheckFailed(f"{self.name}: {found['error']}")
        idx = found["idx"]
        deadline = time.monotonic() + timeout_s
        while True:
            state = self._cell_state()
            if state["errors"]:
                raise WidgetCheckFailed(
                    f"{self.name}: a cell failed in Lab:\n" + "\n".join(state["errors"])
                )
            if state["run"].startswith("failed"):
                raise WidgetCheckFailed(f"{self.name}: Lab could not run the cells: {state['run']}")
            if state["done"]:
                return idx
            if time.monotonic() > deadline:
                self.screenshot("timeout")
                raise WidgetCheckFailed(
                    f"{self.name}: cells {found['cells']} did not finish within {timeout_s:.0f} s "
                    f"(kernel {state['kernel']}, running cell {state['cell']})"
                )
            time.sleep(0.5)

    def _cell_state(self) -> dict:
        return self.page.evaluate(
            """() => {
                const w = window.jupyterapp.shell.currentWidget, nb = w.content;
                const kernel = w.sessionContext.session && w.sessionContext.session.kernel;
                const errors = [];
                nb.widgets.forEach((c, i) => {
                    if (c.model.type !== 'code') return;
                    for (const o of c.model.outputs.toJSON()) {
                        if (o.output_type === 'error')
                            errors.push(`cell ${i}: ${o.ename}: ${o.evalue}`);
                        else if (o.output_type === 'stream' && o.name === 'stderr')
                            errors.push(`cell ${i} (stderr): ${String(o.text).slice(0, 500)}`);
                    }
                });
                const status = kernel ? kernel.status : 'none';
                const r = window.__courseRun || {state: 'none', cell: null};
                return {errors, run: r.state, cell: r.cell, kernel: status,
                        done: r.state === 'done' && status === 'idle'}; }"""
        )

    # ---- looking at the widget

    @property
    def widget_output(self) -> object:
        """The output area of the cell that `run_through` ran last."""
        return self.page.locator('[data-course-cell="widget"] .jp-Cell-outputArea')

    def assert_no_errors(self) -> None:
        """No error/stderr output anywhere, no widget placeholder or widget error text, no
        dropdown in the widget rendered blank, nothing from a widget callback in the log console."""
        state = self._cell_state()
        if state["errors"]:
            raise WidgetCheckFailed(
                f"{self.name}: error output in Lab:\n" + "\n".join(state["errors"])
            )
        # Widget outputs (ipywidgets.Output, interactive_output) are not in the cell model.
        shown = self.page.locator(
            '.jp-Notebook [data-mime-type="application/vnd.jupyter.stderr"], '
            '.jp-Notebook [data-mime-type="application/vnd.jupyter.error"]'
        )
        if shown.count():
            texts = [t[:500] for t in shown.all_inner_texts()]
            raise WidgetCheckFailed(
                f"{self.name}: the page shows error output:\n" + "\n".join(texts)
            )
        text = "\n".join(self.page.locator(".jp-Notebook .jp-OutputArea").all_inner_texts())
        for bad in WIDGET_FAILURE_TEXT:
            if bad in text:
                raise WidgetCheckFailed(f"{self.name}: the page shows {bad!r} instead of a widget")
        blank = self.widget_output.evaluate(
            """(root) => Array.from(root.querySelectorAll('.widget-dropdown'))
                .filter(d => d.querySelector('select') && d.querySelector('select').selectedIndex < 0)
                .map(d => (d.querySelector('label') || d).textContent.trim())"""
        )
        if blank:
            raise WidgetCheckFailed(
                f"{self.name}: dropdown(s) {blank} render with nothing selected (in ipywidgets "
                "value=None means 'no selection': give the option a non-None value or pass index=)"
            )
        logged = self.logged_output()
        if logged:
            raise WidgetCheckFailed(
                f"{self.name}: widget callbacks sent this to Lab's log console:\n"
                + "\n".join(logged)
            )

    def logged_output(self) -> list[str]:
        """Entries (level warning and above) in Lab's log console.

        Output of a widget callback that no Output widget captures lands there, unseen by the
        learner: tracebacks (summarised by their last line, ``ValueError: ...``) and stray
        displays. Opens the console only when its status-bar counter says it holds entries.
        """
        if not self.page.locator(".jp-LogConsole").count():  # not open yet: any messages?
            item = self.page.locator(".jp-LogConsoleStatusItem")
            if not item.count() or item.first.inner_text().strip() in ("", "0"):
                return []
            self.page.evaluate("() => window.jupyterapp.commands.execute('logconsole:open')")
        outputs = self.page.locator(".jp-LogConsole .jp-OutputArea-output")
        with contextlib.suppress(Exception):  # an empty console has no output to wait for
            outputs.first.wait_for(timeout=5000)
        found = []
        for text in outputs.all_inner_texts():
            last = re.findall(r"^\s*(\w*(?:Error|Exception)\b.*)$", text, re.M)
            if last or "Traceback" in text:
                found.append("raised " + (last[-1] if last else text.strip().splitlines()[-1]))
            elif text.strip():
                found.append("output " + text.strip()[:300])
        return found

    def diagnosis(self) -> str:
        """What else went wrong (kernel callback errors, browser console), for failure messages."""
        parts = []
        with contextlib.suppress(Exception):  # never hide the failure being reported
            logged = self.logged_output()
            if logged:
                parts.append("Lab's log console (widget callbacks): " + "; ".join(logged))
        if self.console:
            parts.append(f"browser console: {self.console[-5:]}")
        return "".join(f"\n{p}" for p in parts)

    def control(self, description: str) -> object:
        """The widget control whose description label is exactly `description`."""
        exact = re.compile(rf"^\s*{re.escape(description)}\s*$")
        # `has=` locators are relative to the candidate element, so build it from the page.
        # Most controls carry a `label.widget-label`; a Checkbox its own `label.widget-label-basic`.
        label = self.page.locator(
            ":scope > label.widget-label, :scope > label.widget-label-basic"
        ).filter(has_text=exact)
        return self.widget_output.locator(".jupyter-widgets").filter(has=label).last

    def wait_for_controls(self, *descriptions: str, timeout_s: float = 30.0) -> None:
        """Wait (bounded) until every named control is visible in the widget's output."""
        for d in descriptions:
            try:
                self.control(d).wait_for(state="visible", timeout=timeout_s * 1000)
            except Exception as exc:  # playwright's TimeoutError: say what *was* shown
                self.screenshot(f"no-control-{d}")
                shown = self.widget_output.inner_text(timeout=5000)[:800]
                raise WidgetCheckFailed(
                    f"{self.name}: widget control {d!r} did not render within {timeout_s:.0f} s; "
                    f"the cell output shows:\n{shown}{self.diagnosis()}"
                ) from exc

    def set_control(self, description: str, value: object) -> None:
        """Set a slider, text box, dropdown, toggle or radio control as a learner would."""
        ctl = self.control(description)
        classes = ctl.get_attribute("class") or ""
        text = str(value)
        if "widget-slider" in classes:
            readout = ctl.locator(".widget-readout")
            # A disabled slider's readout is not editable; the kernel may be about to enable it.
            try:
                readout.and_(self.page.locator('[contenteditable="true"]')).wait_for()
            except Exception as exc:
                raise WidgetCheckFailed(
                    f"{self.name}: control {description!r} stays disabled"
                ) from exc
            readout.fill(text)
            readout.press("Enter")
        elif "widget-dropdown" in classes or "widget-select" in classes:
            ctl.locator("select").select_option(label=text)
        elif "widget-toggle-buttons" in classes:
            ctl.locator("button").filter(has_text=re.compile(rf"^\s*{re.escape(text)}\s*$")).click()
        elif "widget-radio" in classes:
            ctl.locator("label").filter(has_text=re.compile(rf"^\s*{re.escape(text)}\s*$")).click()
        elif "widget-checkbox" in classes:
            ctl.locator("input[type=checkbox]").set_checked(bool(value))
        elif ctl.locator("input, textarea").count():
            box = ctl.locator("input, textarea").first
            box.fill(text)
            box.press("Enter")
        else:
            raise WidgetCheckFailed(
                f"{self.name}: don't know how to set control {description!r} ({classes})"
            )

    def control_value(self, description: str) -> str:
        ctl = self.control(description)
        for sel in (".widget-readout", "input", "select"):
            el = ctl.locator(sel)
            if el.count():
                return el.first.inner_text() if sel == ".widget-readout" else el.first.input_value()
        return ctl.inner_text()

    def widget_text(self) -> str:
        return self.widget_output.inner_text()

    def wait_for_text(self, pattern: str | re.Pattern, timeout_s: float = 30.0) -> str:
        """Wait (bounded) until the widget's output text matches `pattern`; returns the text."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout_s
        while True:
            text = self.widget_text()
            if rx.search(text):
                return text
            if time.monotonic() > deadline:
                self.screenshot("text-timeout")
                raise WidgetCheckFailed(
                    f"{self.name}: widget output did not show {rx.pattern!r} within {timeout_s:.0f} s; "
                    f"it shows:\n{text[:800]}{self.diagnosis()}"
                )
            time.sleep(0.25)

    def figure_digest(self) -> str:
        """SHA-256 of the image data of every figure (img, canvas, plotly svg) in the widget's output.

        The encoded image itself (data: or blob: URL, canvas pixels, the plot's SVG markup), not
        a screenshot, so the digest changes exactly when the kernel sent a different picture.
        """
        data = self.widget_output.evaluate(
            """async (root) => {
                const out = [];
                for (const el of root.querySelectorAll('img, canvas, svg.main-svg')) {
                    if (el.tagName === 'CANVAS') { out.push(el.toDataURL()); continue; }
                    if (el.tagName.toLowerCase() === 'svg') { out.push(el.outerHTML); continue; }
                    if (el.src.startsWith('data:')) { out.push(el.src); continue; }
                    const bytes = new Uint8Array(await (await fetch(el.src)).arrayBuffer());
                    out.push(Array.from(bytes, b => String.fromCharCode(b)).join(''));
                }
                return out; }"""
        )
        if not data:
            raise WidgetCheckFailed(f"{self.name}: the widget shows no figure")
        h = hashlib.sha256()
        for item in data:
            h.update(item.encode("utf-8"))
        return h.hexdigest()

    def _settled_figure(self, differs_from: str | None, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        last, steady = None, 0
        while True:
            now = None
            with contextlib.suppress(WidgetCheckFailed):  # mid-redraw the figure may be absent
                now = self.figure_digest()
            idle = self._cell_state()["kernel"] == "idle"
            steady = steady + 1 if (now is not None and now == last and idle) else 0
            last = now
            # Settled: the kernel is idle and three looks in a row saw the same picture.
            if steady >= 2 and now != differs_from:
                return now
            if time.monotonic() > deadline:
                self.screenshot("figure-timeout")
                what = (
                    "is not shown"
                    if last is None
                    else ("did not redraw" if differs_from else "did not settle")
                )
                raise WidgetCheckFailed(
                    f"{self.name}: the figure {what} within {timeout_s:.0f} s{self.diagnosis()}"
                )
            time.sleep(0.25)

    def current_figure(self, timeout_s: float = 30.0) -> str:
        """The digest of the figure once the kernel is idle and the picture stays the same."""
        return self._settled_figure(None, timeout_s)

    def wait_for_new_figure(self, before: str, timeout_s: float = 30.0) -> str:
        """Wait (bounded) until a settled figure differs from `before`; returns its digest."""
        return self._settled_figure(before, timeout_s)

    def redraw_latency_ms(self, description: str, value: object, timeout_s: float = 30.0) -> float:
        """Milliseconds from committing a new value of a slider (its Enter key) to the browser
        painting the changed plot: the first animation frame after the plot's curves (the paths
        of its scatter layers) differ from before. Kernel compute, messages and drawing included.
        """
        self.widget_output.evaluate(
            """(root) => {
                const fig = root.querySelector('.gd-figure') || root;
                const snap = () => Array.from(fig.querySelectorAll('.scatterlayer path'))
                    .map(p => p.getAttribute('d')).join('|');
                const lat = window.__courseLatency = {t0: null, t1: null, before: snap()};
                const onKey = e => { if (e.key === 'Enter' && lat.t0 === null) lat.t0 = performance.now(); };
                document.addEventListener('keydown', onKey, true);
                const obs = new MutationObserver(() => {
                    if (lat.t0 === null || lat.t1 !== null || snap() === lat.before) return;
                    obs.disconnect();
                    document.removeEventListener('keydown', onKey, true);
                    requestAnimationFrame(() => { lat.t1 = performance.now(); });
                });
                obs.observe(fig, {subtree: true, childList: true, attributes: true});
            }"""
        )
        self.set_control(description, value)
        try:
            self.page.wait_for_function(
                "() => window.__courseLatency && window.__courseLatency.t1 !== null",
                timeout=timeout_s * 1000,
            )
        except Exception as exc:  # playwright's TimeoutError
            raise WidgetCheckFailed(
                f"{self.name}: the plot did not change within {timeout_s:.0f} s of setting "
                f"{description!r} to {value!r}{self.diagnosis()}"
            ) from exc
        return float(self.page.evaluate("() => window.__courseLatency.t1 - window.__courseLatency.t0"))

    def wait_idle(self, timeout_s: float = 30.0) -> None:
        """Wait (bounded) until the kernel is idle (the widget's callbacks have finished)."""
        deadline = time.monotonic() + timeout_s
        while self._cell_state()["kernel"] != "idle":
            if time.monotonic() > deadline:
                raise WidgetCheckFailed(f"{self.name}: the kernel stayed busy for {timeout_s:.0f} s")
            time.sleep(0.05)

    def screenshot(self, label: str) -> Path:
        """Save a full-page screenshot to the artefact directory; returns its path."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.shots += 1
        path = ARTIFACTS / f"{self.name}-{self.shots:02d}-{label}.png"
        with contextlib.suppress(Exception):  # a screenshot must never hide the real failure
            self.page.screenshot(path=str(path), full_page=True, timeout=10_000)
        return path
