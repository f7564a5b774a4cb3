"""Fixtures for the real-browser widget tests (the machinery is in lab_harness.py).

Every test here skips with a one-line reason when Debian's Chromium is not installed
(`bash .ci/install_browser.sh` installs it), or fails instead when COURSE_REQUIRE_BROWSER=1
(CI sets it, so the browser test can never be skipped there unnoticed).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .lab_harness import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    UI_TIMEOUT_MS,
    LabPage,
    LabServer,
    start_lab,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "browser: end-to-end test in JupyterLab + headless Chromium (skips without it)"
    )


@pytest.fixture(scope="session")
def chromium_executable() -> Path:
    missing = None
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        missing = f"no Chromium at {CHROMIUM} (run: bash .ci/install_browser.sh)"
    elif importlib.util.find_spec("playwright") is None:
        missing = "the playwright package is not installed (run: make setup)"
    if missing and os.environ.get("COURSE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser test required (COURSE_REQUIRE_BROWSER=1) but {missing}")
    if missing:
        pytest.skip(f"browser test skipped: {missing}")
    return CHROMIUM


@pytest.fixture(scope="session")
def lab_server(
    chromium_executable: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LabServer]:
    if ARTIFACTS.is_dir():  # screenshots of an earlier run would mislead
        for old in ARTIFACTS.glob("*.png"):
            old.unlink()
    server = start_lab(tmp_path_factory.mktemp("lab"))
    try:
        yield server
    finally:
        server.stop()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(server.log_path, ARTIFACTS / "jupyter-server.log")


@pytest.fixture(scope="session")
def browser(chromium_executable: Path) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # launch() gives every run a fresh, temporary profile (its own --user-data-dir).
        b = pw.chromium.launch(executable_path=str(chromium_executable), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def lab(
    request: pytest.FixtureRequest, lab_server: LabServer, browser: object
) -> Iterator[LabPage]:
    """A fresh browser context on the Lab server; kernels are shut down afterwards."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    lp = LabPage(page, lab_server, name)
    page.on(
        "console",
        lambda m: lp.console.append(f"{m.type}: {m.text[:300]}") if m.type == "error" else None,
    )
    page.on("pageerror", lambda e: lp.console.append(f"pageerror: {str(e)[:300]}"))
    try:
        yield lp
    finally:
        lp.screenshot("final")
        context.close()
        lab_server.shutdown_kernels()
