"""The web page in a real browser (Debian's headless Chromium driven by Playwright) against the real service."""

import pytest

from deep_speaker.assembly import load_encoder
from deep_speaker.service import SpeakerService, create_app
from tests.helpers import ROOT, chromium

SAMPLES = ROOT / "samples" / "PhilippeRemy"


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
        page.wait_for_function(
            "!document.getElementById('verify-result').textContent.startsWith('…') && document.getElementById('verify-result').textContent"
        )
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


@pytest.mark.slow
def test_the_page_draws_the_diarization_timeline(tmp_path, serve):
    import soundfile as sf
    from playwright.sync_api import sync_playwright

    from deep_speaker.diarization.pipeline import DiarizationConfig, Diarizer
    from deep_speaker.embedding import SpeakerEncoder
    from tests.helpers import SpectrumEncoder, pitch_conversation, tiny_model

    browser_path = chromium()
    wave, _ = pitch_conversation([(110, 2.5), (230, 2.0), (110, 1.5), (230, 3.0)])
    sf.write(tmp_path / "talk.wav", wave, 16000)
    diarizer = Diarizer(SpectrumEncoder(), DiarizationConfig(vad="energy", ahc_threshold=0.5))  # synthetic voices told apart by pitch
    expected = diarizer.diarize(tmp_path / "talk.wav")
    service = SpeakerService(SpeakerEncoder(model=tiny_model()), tmp_path / "speakers.db", diarizer=diarizer)
    with serve(create_app(service)) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(url)
        page.set_input_files("#diarize-audio", str(tmp_path / "talk.wav"))
        page.click("#diarize")
        page.wait_for_function("document.getElementById('diarize-result').textContent.includes('speaker(s)')")
        assert page.text_content("#diarize-result") == f"2 speaker(s), {len(expected)} turn(s)"
        bars = page.eval_on_selector_all("#timeline rect", "bars => bars.map(b => [b.getAttribute('data-speaker'), b.textContent])")
        assert len(bars) == len(expected) and {speaker for speaker, _ in bars} == {s.speaker for s in expected}
        assert [title for _, title in bars][0] == f"{expected[0].speaker} {expected[0].start:.2f}-{expected[0].end:.2f} s"
        assert page.get_attribute("#diarize-rttm", "download") == "talk.rttm" and page.is_visible("#diarize-rttm")
        page.check("#diarize-exclusive")
        page.fill("#diarize-count", "1")
        page.click("#diarize")
        page.wait_for_function("document.getElementById('diarize-result').textContent.startsWith('1 speaker(s)')")
        browser.close()
