"""The documentation site in a real browser: `mkdocs build --strict` into
build/site, served on localhost, and every page loaded in headless Chromium
(Debian's `chromium` and `chromium-driver`, driven by Selenium with both
paths given, so nothing is downloaded). A page fails on a console error, an
internal link (or #anchor) that does not resolve, an image that does not
load, a missing navigation or title, or TeX left as text. Screenshots of the home page and the ViT page
go to build/screenshots/ (CI artefacts).

Without Chromium the test is skipped with the install line; `.ci/run` sets
KERAS_VIT_REQUIRE_BROWSER=1, which turns the skip into a failure. The site
does not depend on the backend, so it runs once, in the tensorflow tier of
tests/run_all.py."""

import functools
import html.parser
import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build")
INSTALL = "sudo apt-get install chromium chromium-driver (Debian/Ubuntu), then pip install selenium"


def _browser_paths():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return chromium, driver


pytestmark = pytest.mark.one_backend("tensorflow", "the site does not depend on the backend")


@pytest.fixture(scope="module")
def browser():
    chromium, driver_path = _browser_paths()
    missing = [name for name, path in (("chromium", chromium), ("chromedriver", driver_path)) if path is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium")
    if missing:
        message = f"{', '.join(missing)} not found: {INSTALL}"
        if os.environ.get("KERAS_VIT_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager never looks for a driver online
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def site():
    """The built site, served on a free localhost port: `(base_url, site_dir)`."""
    site_dir = os.path.join(BUILD, "site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", site_dir], cwd=ROOT, env=env,
        capture_output=True, text=True,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    handler = functools.partial(_QuietHandler, directory=site_dir)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", site_dir
    server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _Ids(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)


@functools.lru_cache(maxsize=None)
def _fetch(url):
    """`(status, ids in the page)` of a local URL."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read().decode("utf-8", "replace")
            status = response.status
    except urllib.error.HTTPError as error:
        return error.code, frozenset()
    parser = _Ids()
    if url.endswith("/") or url.endswith(".html"):
        parser.feed(body)
    return status, frozenset(parser.ids)


def _pages(site_dir):
    pages = []
    for folder, _, names in os.walk(site_dir):
        if "index.html" in names:
            relative = os.path.relpath(folder, site_dir)
            pages.append("" if relative == "." else relative.replace(os.sep, "/") + "/")
    return sorted(pages)


def test_every_page_loads_cleanly_in_chromium(browser, site):
    from selenium.webdriver.common.by import By

    base, site_dir = site
    pages = _pages(site_dir)
    assert {"", "models/vit/", "guides/export/", "api/models/"} <= set(pages)
    problems = []
    for page in pages:
        url = base + page
        browser.get(url)
        deadline = time.time() + 10
        while time.time() < deadline:  # images finish loading (or fail) after the document
            pending = browser.execute_script(
                "return document.readyState !== 'complete' || Array.from(document.images).some(i => !i.complete)"
            )
            if not pending:
                break
            time.sleep(0.1)
        for entry in browser.get_log("browser"):
            if entry["level"] == "SEVERE":
                problems.append(f"{page}: console error: {entry['message']}")
        broken = browser.execute_script(
            "return Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"
        )
        problems += [f"{page}: image does not load: {src}" for src in broken]
        if not browser.find_elements(By.CSS_SELECTOR, "nav.md-nav--primary a.md-nav__link"):
            problems.append(f"{page}: no navigation")
        titles = browser.find_elements(By.CSS_SELECTOR, "article h1")
        if not titles:
            problems.append(f"{page}: no title")
        elif "$$" in browser.find_element(By.CSS_SELECTOR, "article").text:
            problems.append(f"{page}: TeX shown as text (the site renders no math)")
        links = browser.execute_script("return Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")
        for link in links:
            if not link.startswith(base):
                continue  # external: not reachable offline, not this site's
            target, _, anchor = link.partition("#")
            status, ids = _fetch(target)
            if status != 200:
                problems.append(f"{page}: broken link {link} ({status})")
            elif anchor and urllib.parse.unquote(anchor) not in ids:
                problems.append(f"{page}: link to a missing anchor {link}")
    assert problems == []


def test_screenshots_of_the_home_and_a_model_page(browser, site):
    base, _ = site
    folder = os.path.join(BUILD, "screenshots")
    os.makedirs(folder, exist_ok=True)
    for page, name in (("", "home.png"), ("models/vit/", "model_vit.png")):
        browser.get(base + page)
        path = os.path.join(folder, name)
        assert browser.save_screenshot(path)
        with open(path, "rb") as f:
            header = f.read(8)
        assert header == b"\x89PNG\r\n\x1a\n" and os.path.getsize(path) > 20_000, path
