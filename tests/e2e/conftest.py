"""Fixtures for dashboard tests: a real `dockyard server` on the real engine and Debian's
Chromium driven by Playwright (never `playwright install`: the browser is the system's)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeout

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from dockyard_harness import Server, engine_available, remove_instance_objects  # noqa: E402
from peers import gitserver  # noqa: E402, F401 — a fixture of the build tests

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.fixture(scope="session")
def browser() -> Iterator:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed: run `make install-test` as root (scripts/install.sh)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A real `dockyard server` on the real engine; its containers and networks are removed after."""
    if not engine_available():
        pytest.skip("no Docker engine")
    s = Server(tmp_path / "server")
    s.start()
    yield s
    s.stop()
    import docker

    remove_instance_objects(docker.APIClient(version="1.41"), s.instance)


def open_login(page, url: str) -> None:  # noqa: ANN001
    """Open the login page and wait for its form (see open_page)."""
    open_page(page, url + "/#/login", "#username")


def open_page(page, url: str, selector: str) -> None:  # noqa: ANN001
    """Load `url` as a new document and wait for `selector`, loading it again when Chromium dropped
    its requests: Chromium aborts requests in flight (net::ERR_NETWORK_CHANGED, loopback too) whenever
    the host's network interfaces change, which dockerd does with each container it starts or
    removes; a dropped module leaves the page without its script, so nothing comes and no page error
    ever does. If `selector` still does not come, say what the page was waiting for."""
    pending: dict[str, float] = {}
    seen: list[str] = []
    dropped = [False]

    def failed(r) -> None:  # noqa: ANN001
        seen.append(f"failed {r.url}: {r.failure}")
        pending.pop(r.url, None)
        dropped[0] = dropped[0] or "ERR_NETWORK_CHANGED" in (r.failure or "")

    def load(navigate) -> None:  # noqa: ANN001
        try:
            navigate()
        except PlaywrightError as e:  # the document itself was dropped
            if "ERR_NETWORK_CHANGED" not in str(e):
                raise
            dropped[0] = True

    handlers = {"request": lambda r: pending.__setitem__(r.url, time.monotonic()),
                "requestfinished": lambda r: pending.pop(r.url, None), "requestfailed": failed,
                "console": lambda m: m.type == "error" and seen.append(f"console {m.text}")}
    for event, fn in handlers.items():
        page.on(event, fn)
    try:
        started = time.monotonic()
        load(lambda: page.goto("about:blank"))  # a new document even when only the #hash differs
        load(lambda: page.goto(url))
        reloads = 0
        while True:
            try:
                page.wait_for_selector(selector, timeout=1_000)
                return
            except PlaywrightTimeout:
                now = time.monotonic()
                if dropped[0] and reloads < 3:
                    dropped[0], reloads = False, reloads + 1
                    load(page.reload)
                elif now - started > 30:  # a loaded machine may be slow to start the page, but not this slow
                    waiting = [f"{u} (pending {now - t:.1f} s)" for u, t in pending.items()]
                    raise AssertionError(f"no {selector} {now - started:.1f} s after opening {url} ({reloads} "
                                         f"reloads, load {os.getloadavg()}); requests still pending: {waiting}; "
                                         f"{seen}") from None
    finally:
        for event, fn in handlers.items():
            page.remove_listener(event, fn)


class Browsing:
    """One user's browser context: a page that fails the test on any script error."""

    def __init__(self, browser, url: str) -> None:  # noqa: ANN001
        self.context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="en-US")
        self.page = self.context.new_page()
        self.url = url
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.set_default_timeout(15_000)

    def login(self, user: str, password: str) -> None:
        open_login(self.page, self.url)
        self.page.fill("#username", user)
        self.page.fill("#password", password)
        self.page.click("#login-form button[type=submit]")
        self.page.wait_for_selector("#who")

    def go(self, hash_: str) -> None:
        self.page.goto(f"{self.url}/{hash_}")

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()
        assert not self.errors, f"script errors in the page: {self.errors}"


@pytest.fixture
def browsing(browser) -> Iterator:  # noqa: ANN001
    made: list[Browsing] = []

    def make(url: str) -> Browsing:
        b = Browsing(browser, url)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()
