"""The web page in a real browser (Debian's headless Chromium driven by Playwright) against the real service."""

import os
import shutil

import pytest

from deep_speaker.score_fusion import load_encoder
from deep_speaker.service import SpeakerService, create_app
from tests.helpers import ROOT

SAMPLES = ROOT / "samples" / "PhilippeRemy"


def chromium() -> str:
    """The system's Chromium; skipped where it is not installed, except under CI, where that is a failure."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "Chromium is not installed (Debian: apt-get install chromium); the page test needs a real browser"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.mark.slow
def test_the_page_verifies_enrols_and_identifies_the_readme_samples(tmp_path, serve):
    from playwright.sync_api import sync_playwright

    browser_path = chromium()
    service = SpeakerService(load_encoder(), tmp_path / "speakers.db", ["page-key"])
    first, second = str(SAMPLES / "PhilippeRemy_001.wav"), str(SAMPLES / "PhilippeRemy_002.wav")
    with serve(create_app(service)) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(url)
        page.wait_for_function("document.getElementById('health').textContent.includes('enrolled')")
        page.set_input_files("#verify-a", first)
        page.set_input_files("#verify-b", second)
        page.click("#verify")
        page.wait_for_function("!document.getElementById('verify-result').textContent.startsWith('…') && document.getElementById('verify-result').textContent")
        verdict = page.text_content("#verify-result")
        assert verdict.startswith("same speaker: score 0.875") and "(far1)" in verdict, verdict

        page.fill("#enrol-name", "Philippe")
        page.set_input_files("#enrol-audio", first)
        page.fill("#api-key", "page-key")
        page.click("#enrol")
        page.wait_for_selector("#speakers li")
        assert page.text_content("#enrol-result") == "enrolled Philippe from 1 file(s)"

        page.set_input_files("#identify-audio", second)
        page.click("#identify")
        page.wait_for_function("document.getElementById('identify-result').textContent.startsWith('speaker:')")
        assert page.text_content("#identify-result").startswith("speaker: Philippe\nPhilippe 0.875")
        browser.close()
    assert [name for name, _ in service.registry.names()] == ["Philippe"]
