"""The documentation site: MkDocs (Material) builds it with warnings as errors, and no page of it asks the internet
for anything when a real browser opens it."""

import functools
import http.server
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.helpers import ROOT, chromium

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(target)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
    )
    assert built.returncode == 0, built.stdout + built.stderr
    return target


def test_the_site_builds_with_every_page_and_the_front_page_from_the_readme(site):
    for page in ("index", "command-line", "python-api", "evaluation", "training", "deployment", "diarization", "adversarial"):
        assert (site / page / "index.html").is_file() or (site / f"{page}.html").is_file(), page
    front = (site / "index.html").read_text()
    assert "Three examples" in front and 'href="model-card/"' in front and 'href="command-line/"' in front
    assert 'href="docs/' not in front and 'href="deep_speaker/' not in front  # the README's links rewritten for the site


def test_no_page_loads_anything_from_the_internet(site):
    from playwright.sync_api import sync_playwright

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    local = f"http://127.0.0.1:{server.server_address[1]}/"
    pages = ["", *sorted(f"{index.parent.name}/" for index in site.glob("*/index.html"))]
    assert len(pages) >= 15
    outside, loaded = [], 0
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
            page = browser.new_page()
            page.on("request", lambda request: None if request.url.startswith((local, "data:", "blob:")) else outside.append(request.url))
            for path in pages:
                page.goto(local + path.lstrip("/"), wait_until="networkidle")
                loaded += page.evaluate("document.querySelectorAll('article').length")
            browser.close()
    finally:
        server.shutdown()
    assert loaded == len(pages) and not outside, outside
