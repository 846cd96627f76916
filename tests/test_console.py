"""The console in a real headless Chromium against a real gunicorn (SQLite).

Needs Debian's ``chromium`` and ``chromium-driver``; skipped loudly without them,
except in CI (CI=true), where their absence is a failure.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from api.testing import LiveServer
from ledger.auth import TokenStore
from ledger.releases import create_release
from ledger.service import Ledger
from ledger.store import open_store
from tests import factory as f

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement

P = "console"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
)


def _browser_problem() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for path in (CHROMIUM, DRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is missing (apt-get install -y chromium chromium-driver)"
    return None


@dataclass
class Site:
    url: str
    auditor: str
    writer: str
    admin: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    problem = _browser_problem()
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the console browser test must run in CI: {problem}")
        message = f"SKIPPING THE CONSOLE BROWSER TEST: {problem}"
        warnings.warn(message, stacklevel=1)
        pytest.skip(message)
    data: Path = tmp_path_factory.mktemp("console")
    url = f"sqlite:///{data / 'ledger.db'}"
    store = open_store(url, upgrade=True)
    ledger = Ledger(store)
    ledger.append(
        P,
        [
            *f.setup_events(),
            f.mask_created("inst-1", segmentation=f.box_rle(x1=20)),
            f.mask_edited("inst-1", 1, segmentation=f.box_rle(x1=30)),
            f.mask_edited("inst-1", 2, segmentation=f.box_rle(y0=10, x1=30)),
            f.review("inst-1", 3),
        ],
        "test",
    )
    create_release(ledger, P, "v1", actor="rita", principal="test")
    tokens = TokenStore(store)
    secrets = {
        role: tokens.create(role, created_by="test")[1] for role in ("auditor", "writer", "admin")
    }
    store.close()
    # threads: Chromium preconnects idle sockets, which would hold a sync worker
    with LiveServer(url, data_dir=data, workers=1, threads=4) as server:
        yield Site(server.url, secrets["auditor"], secrets["writer"], secrets["admin"])


@pytest.fixture(scope="module")
def browser(site: Site) -> Iterator[WebDriver]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _login(driver: WebDriver, site: Site, secret: str) -> None:
    from selenium.webdriver.common.by import By

    d = driver
    d.delete_all_cookies()
    d.get(site.url + "/console/")
    d.find_element(By.ID, "token").send_keys(secret)
    d.find_element(By.ID, "sign-in").click()
    _wait_for(d, "login-error", "projects")


def _wait_for(driver: WebDriver, *ids: str) -> WebElement:
    """The first element with one of ``ids`` once the page that has it has loaded."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def found(d: WebDriver) -> WebElement | None:
        for element_id in ids:
            hits = d.find_elements(By.ID, element_id)
            if hits:
                return hits[0]
        return None

    element = WebDriverWait(driver, 60).until(found)
    assert element is not None
    return element


def test_writer_token_is_refused(browser: WebDriver, site: Site) -> None:
    from selenium.webdriver.common.by import By

    _login(browser, site, site.writer)
    error = _wait_for(browser, "login-error")
    assert "writer" in error.text
    browser.get(site.url + f"/console/p/{P}")
    assert browser.find_elements(By.ID, "token")  # back at login


def test_auditor_sees_three_revisions_and_verifies_the_release(
    browser: WebDriver, site: Site
) -> None:
    from selenium.webdriver.common.by import By

    d = browser
    _login(d, site, site.auditor)
    assert _wait_for(d, "projects", "login-error").text == "Projects"
    d.get(site.url + f"/console/p/{P}/instances/inst-1")
    images = d.find_elements(By.CSS_SELECTOR, "img.mask-png")
    assert len(images) == 3
    for img in images:
        width = d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img)
        assert width == 64
    assert len(d.find_elements(By.LINK_TEXT, "inclusion proof")) == 4

    d.get(site.url + f"/console/p/{P}/releases")
    d.find_element(By.ID, "verify-v1").click()
    result = _wait_for(d, "release-result")
    assert result.text.startswith("Verified"), result.text

    d.get(site.url + f"/console/p/{P}")
    d.find_element(By.ID, "verify-log").click()
    assert _wait_for(d, "verify-result").text.startswith("Verified")


def test_session_cookie_flags_and_anonymous_access(site: Site) -> None:
    with httpx.Client(base_url=site.url, timeout=60) as http:
        r = http.get(f"/console/p/{P}")
        assert r.status_code == 302 and r.headers["location"].endswith("/console/")
        form = http.get("/console/")
        csrf = form.text.split('name="csrf" value="')[1].split('"')[0]
        r = http.post("/console/login", data={"csrf": csrf, "token": site.auditor})
        assert r.status_code == 302
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
        # behind a TLS proxy the cookie is Secure
        page = httpx.get(site.url + "/console/", headers={"X-Forwarded-Proto": "https"}, timeout=60)
        assert "; Secure" in page.headers["set-cookie"]
        r = http.get(f"/console/p/{P}/instances/inst-1/mask/999.png")
        assert r.status_code == 404
        r = http.get(f"/console/p/{P}/search", params={"actor": "alice", "since": "nonsense"})
        assert r.status_code == 422
        r = http.get(f"/console/p/{P}/search", params={"actor": "alice"})
        assert r.status_code == 200 and "inst-1" in r.text
        r = http.get(f"/console/p/{P}/diff", params={"old": "v1", "new": "@9"})
        assert r.status_code == 200
        r = http.get(f"/console/p/{P}/qa")
        assert r.status_code == 200
        r = http.post("/console/login", data={"csrf": "forged", "token": site.auditor})
        assert r.status_code == 403
