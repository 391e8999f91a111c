"""Debian Chromium driven by Playwright, launched the same way by every browser test.

Mark a browser test with `@needs_chromium` (or put it in the module's `pytestmark`) so that
it is skipped before its fixtures start any server when Chromium is not installed; with
`CI=true` it runs instead and `chromium()` fails it, as CI must not skip it silently.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from service import PROJECT_ROOT
from tests.support import CI

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = PROJECT_ROOT / "test-artifacts"  # screenshots, kept after the run
NOT_INSTALLED = "Debian Chromium is not installed (apt-get install chromium)"

needs_chromium = pytest.mark.skipif(not CHROMIUM.exists() and not CI, reason=NOT_INSTALLED)

# The marks of a module of browser tests: marked `browser`, skipped without Chromium
# (outside CI), and run on SQLite only (the page is the same on every backend).
BROWSER_MODULE = [
    pytest.mark.browser,
    needs_chromium,
    pytest.mark.parametrize("backend", ["sqlite"], indirect=True),
]


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """A Chromium browser, closed afterwards; ARTIFACTS exists for the screenshots."""
    if not CHROMIUM.exists():
        if CI:
            pytest.fail(f"CI=true needs {CHROMIUM}")
        pytest.skip(NOT_INSTALLED)
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def assert_accessible(page: Any, name: str) -> None:
    """axe-core (shipped by axe-playwright-python) finds no WCAG violation on `page`."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    assert results.violations_count == 0, f"{name}:\n{results.generate_snapshot()}"
