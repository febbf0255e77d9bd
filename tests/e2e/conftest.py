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


class Browsing:
    """One user's browser context: a page that fails the test on any script error."""

    def __init__(self, browser, url: str) -> None:  # noqa: ANN001
        self.context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="en-US")
        self.page = self.context.new_page()
        self.url = url
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.set_default_timeout(15_000)
        # what the page was waiting for, said when the login page does not come (a rare flake at load 5-7)
        self.pending: dict[str, float] = {}
        self.network: list[str] = []
        self.page.on("request", lambda r: self.pending.__setitem__(r.url, time.monotonic()))
        self.page.on("requestfinished", lambda r: self.pending.pop(r.url, None))
        self.dropped = False  # a request of the page was dropped because the host's network changed
        self.page.on("requestfailed", self._failed)
        self.page.on("console", lambda m: m.type in ("error", "warning") and self.network.append(f"console {m.text}"))

    def _failed(self, request) -> None:  # noqa: ANN001
        self.network.append(f"failed {request.url}: {request.failure}")
        self.pending.pop(request.url, None)
        self.dropped = self.dropped or "ERR_NETWORK_CHANGED" in (request.failure or "")

    def login(self, user: str, password: str) -> None:
        self.open_login()
        self.page.fill("#username", user)
        self.page.fill("#password", password)
        self.page.click("#login-form button[type=submit]")
        self.page.wait_for_selector("#who")

    def open_login(self) -> None:
        """The login page, loaded again when Chromium dropped its requests: Chromium aborts requests
        in flight (net::ERR_NETWORK_CHANGED, loopback too) whenever the host's network interfaces
        change, which dockerd does with each container it starts or removes; a dropped module leaves
        the page without its script, so no form and no page error ever comes."""
        started = time.monotonic()
        self.dropped = False
        self._load(lambda: self.page.goto(self.url + "/#/login"))
        reloads = 0
        while True:
            try:
                self.page.wait_for_selector("#username", timeout=1_000)
                return
            except PlaywrightTimeout:
                now = time.monotonic()
                if self.dropped and reloads < 3:
                    self.dropped, reloads = False, reloads + 1
                    self._load(self.page.reload)
                elif now - started > 30:  # a loaded machine may be slow to start the page, but not this slow
                    waiting = [f"{url} (pending {now - t:.1f} s)" for url, t in self.pending.items()]
                    raise AssertionError(
                        f"no login form {now - started:.1f} s after opening the page ({reloads} reloads, load "
                        f"{os.getloadavg()}); requests still pending: {waiting}; {self.network}; {self.errors}") from None

    def _load(self, navigate) -> None:  # noqa: ANN001
        try:
            navigate()
        except PlaywrightError as e:  # the document itself was dropped
            if "ERR_NETWORK_CHANGED" not in str(e):
                raise
            self.dropped = True

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
