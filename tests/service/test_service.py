"""The HTTP service over real HTTP on loopback: every endpoint, limits, keys, errors, concurrent enrolments."""

import io
import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import soundfile as sf

from deep_speaker.diarization import read_rttm
from deep_speaker.diarization.pipeline import DiarizationConfig, Diarizer
from deep_speaker.embedding import SpeakerEncoder
from deep_speaker.scoring.calibration import Calibration, save_calibration
from deep_speaker.service import ServiceLimits, SpeakerService, create_app
from deep_speaker.service.app import ServiceError
from deep_speaker.verification import Verifier
from tests.helpers import SpectrumEncoder, pitch_conversation, synthetic_speech, tiny_model

KEY = "test-key"


def wav_bytes(waveform, rate=16000) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, waveform, rate, format="WAV")
    return buffer.getvalue()


def speech(pitch: float, seed: int = 0, seconds: float = 1.5) -> bytes:
    return wav_bytes(synthetic_speech(seconds, pitch=pitch, seed=seed))


@pytest.fixture(scope="module")
def encoder():
    encoder = SpeakerEncoder(model=tiny_model())
    rng = np.random.default_rng(0)  # a calibration for the tiny model, so decisions have thresholds
    save_calibration(Calibration.from_scores(rng.normal(0.8, 0.05, 200), rng.normal(0.2, 0.1, 2000), model=encoder.fingerprint))
    return encoder


@pytest.fixture
def service(encoder, tmp_path):
    limits = ServiceLimits(max_upload_bytes=1_000_000, max_seconds=8.0, max_diarize_seconds=20.0, max_concurrent=2)
    diarizer = Diarizer(SpectrumEncoder(), DiarizationConfig(vad="energy", ahc_threshold=0.5))  # synthetic voices told apart by pitch
    return SpeakerService(encoder, tmp_path / "speakers.db", [KEY], limits, diarizer=diarizer)


@pytest.fixture
def url(service, serve):
    with serve(create_app(service)) as base:
        yield base


def test_health_and_the_openapi_description_list_every_endpoint(url, encoder):
    health = httpx.get(f"{url}/health").json()
    assert health["status"] == "ok" and health["model"] == encoder.fingerprint and health["speakers"] == 0
    paths = httpx.get(f"{url}/openapi.json").json()["paths"]
    assert {"/health", "/embed", "/verify", "/identify", "/speakers", "/speakers/{name}", "/diarize"} <= set(paths)
    assert set(paths["/speakers"]) == {"get", "post"} and "delete" in paths["/speakers/{name}"]
    assert "deep-speaker" in httpx.get(url).text


def test_the_api_page_loads_nothing_from_the_internet_and_describes_the_api_key(url, encoder):
    page = httpx.get(f"{url}/docs").text
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources and all(source.startswith("/docs-assets/") for source in sources), sources
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page
    for source in sources:
        assert httpx.get(f"{url}{source}").status_code == 200, source
    schema = httpx.get(f"{url}/openapi.json").json()
    assert schema["components"]["securitySchemes"]["APIKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "a key the service was started with (--api-key)",
    }
    assert schema["paths"]["/speakers"]["post"]["security"] == [{"APIKeyHeader": []}]
    embedded = httpx.post(f"{url}/embed", files={"audio": ("a.wav", speech(120))}).json()
    assert embedded["embedding_dim"] == encoder.embedding_dim == len(embedded["embedding"])


def test_embed_and_verify_give_the_library_s_answers(url, encoder, tmp_path):
    a, b = speech(110, 1), speech(220, 2)
    (tmp_path / "a.wav").write_bytes(a)
    (tmp_path / "b.wav").write_bytes(b)
    embedded = httpx.post(f"{url}/embed", files={"audio": ("a.wav", a)}).json()
    np.testing.assert_allclose(embedded["embedding"], encoder.embed(tmp_path / "a.wav"), atol=1e-6)
    decision = httpx.post(f"{url}/verify", files={"audio": ("a.wav", a), "audio_b": ("b.wav", b)}).json()
    expected = Verifier(encoder).verify(tmp_path / "a.wav", tmp_path / "b.wav")
    assert decision["score"] == pytest.approx(expected.score, abs=1e-6) and decision["accepted"] == expected.accepted
    assert decision["decision"] in ("same speaker", "different speakers") and decision["operating_point"] == "far1"
    strict = httpx.post(f"{url}/verify", files={"audio": ("a.wav", a), "audio_b": ("b.wav", b)}, data={"operating_point": "far0.1"}).json()
    assert strict["threshold"] > decision["threshold"]
    neither = httpx.post(f"{url}/verify", files={"audio": ("a.wav", a)})
    assert neither.status_code == 422 and "two recordings" in neither.json()["error"]["message"]


def test_enrol_list_identify_verify_by_name_and_remove(url):
    low = [("audio", (f"low{k}.wav", speech(100, k))) for k in range(2)]
    created = httpx.post(f"{url}/speakers", data={"name": "low"}, files=low, headers={"X-API-Key": KEY})
    assert created.status_code == 201 and created.json() == {"name": "low", "files": 2}
    httpx.post(
        f"{url}/speakers", data={"name": "high"}, files={"audio": ("h.wav", speech(260, 5))}, headers={"X-API-Key": KEY}
    ).raise_for_status()
    assert httpx.get(f"{url}/speakers").json() == {"speakers": [{"name": "high", "files": 1}, {"name": "low", "files": 2}]}
    twice = httpx.post(f"{url}/speakers", data={"name": "low"}, files={"audio": ("x.wav", speech(100, 9))}, headers={"X-API-Key": KEY})
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "speaker_exists"
    identified = httpx.post(f"{url}/identify", files={"audio": ("q.wav", speech(100, 7))}, data={"top_k": "2"}).json()
    assert [entry["name"] for entry in identified["ranked"]][0] == "low" and len(identified["ranked"]) == 2
    by_name = httpx.post(f"{url}/verify", files={"audio": ("q.wav", speech(100, 7))}, data={"speaker": "low"}).json()
    assert by_name["score"] == pytest.approx(identified["ranked"][0]["score"], abs=1e-6)
    assert httpx.delete(f"{url}/speakers/low", headers={"X-API-Key": KEY}).json() == {"removed": "low"}
    gone = httpx.delete(f"{url}/speakers/low", headers={"X-API-Key": KEY})
    assert gone.status_code == 404 and "no speaker named 'low'" in gone.json()["error"]["message"]
    assert "speakers.db" not in gone.text  # the server's paths stay on the server


def test_writing_needs_a_valid_key(url, encoder, tmp_path, serve):
    files = {"audio": ("a.wav", speech(120))}
    for headers in ({}, {"X-API-Key": "wrong"}):
        refused = httpx.post(f"{url}/speakers", data={"name": "eve"}, files=files, headers=headers)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "bad_api_key"
    assert httpx.delete(f"{url}/speakers/eve", headers={"X-API-Key": "wrong"}).status_code == 401
    assert httpx.get(f"{url}/speakers").json() == {"speakers": []}
    keyless = SpeakerService(encoder, tmp_path / "other.db", [])
    with serve(create_app(keyless)) as other:
        disabled = httpx.post(f"{other}/speakers", data={"name": "eve"}, files=files, headers={"X-API-Key": ""})
        assert disabled.status_code == 403 and "without API keys" in disabled.json()["error"]["message"]


def test_oversized_uploads_and_long_recordings_get_413(url):
    big = b"RIFF" + bytes(1_200_000)
    declared = httpx.post(f"{url}/embed", files={"audio": ("big.wav", big)})
    assert declared.status_code == 413 and declared.json()["error"]["code"] == "upload_too_large"

    def chunks():  # no Content-Length: counted while it streams in
        yield b'--x\r\nContent-Disposition: form-data; name="audio"; filename="big.wav"\r\n\r\nRIFF'
        for _ in range(40):
            yield bytes(50_000)
        yield b"\r\n--x--\r\n"

    streamed = httpx.post(f"{url}/embed", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert streamed.status_code == 413 and streamed.json()["error"]["code"] == "upload_too_large"
    long = wav_bytes(np.tile(synthetic_speech(1.0), 9))  # 13.5 s against a limit of 8 s, 432 kB
    too_long = httpx.post(f"{url}/embed", files={"audio": ("long.wav", long)})
    assert too_long.status_code == 413 and too_long.json()["error"] == {
        "code": "audio_too_long",
        "message": "long.wav: 13.5 s of audio; this service takes at most 8 s per recording",
    }


@pytest.mark.parametrize(
    "name,content,code",
    [
        ("noise.wav", b"RIFF\x00\x00garbage" * 100, "corrupt_audio"),
        ("empty.wav", b"", "empty_audio"),
        ("silence.wav", wav_bytes(np.zeros(16000, np.float32)), "silent_audio"),
        ("notes.txt", b"hello", "unsupported_format"),
    ],
)
def test_bad_audio_is_a_json_error_naming_the_upload(url, name, content, code):
    response = httpx.post(f"{url}/embed", files={"audio": (name, content)})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == code and error["message"].startswith(name) and "/tmp" not in error["message"]
    assert "Traceback" not in response.text


def test_malformed_requests_and_internal_errors_are_json_without_stack_traces(url, service, monkeypatch):
    missing = httpx.post(f"{url}/embed", data={"nothing": "here"})
    assert (
        missing.status_code == 422
        and missing.json()["error"]["code"] == "invalid_request"
        and "audio" in missing.json()["error"]["message"]
    )
    bad_point = httpx.post(f"{url}/identify", files={"audio": ("a.wav", speech(120))}, data={"operating_point": "loose"})
    assert bad_point.status_code == 400 and bad_point.json()["error"]["code"] == "bad_operating_point"

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals at /srv/models")

    monkeypatch.setattr(service.encoder, "embed", broken)
    crashed = httpx.post(f"{url}/embed", files={"audio": ("a.wav", speech(120))})
    assert crashed.status_code == 500 and crashed.json() == {
        "error": {"code": "internal_error", "message": "internal error (the service log has the details)"}
    }


def test_32_concurrent_enrolments_are_all_stored(url):
    def enrol(index):
        files = {"audio": (f"s{index}.wav", speech(90 + 7 * index, index, seconds=0.8))}
        return httpx.post(
            f"{url}/speakers", data={"name": f"speaker{index:02d}"}, files=files, headers={"X-API-Key": KEY}, timeout=120
        ).status_code

    with ThreadPoolExecutor(max_workers=32) as pool:
        codes = list(pool.map(enrol, range(32)))
    assert codes == [201] * 32
    names = [entry["name"] for entry in httpx.get(f"{url}/speakers").json()["speakers"]]
    assert names == [f"speaker{index:02d}" for index in range(32)]


def test_model_work_is_bounded_and_the_overflow_gets_503(encoder, tmp_path):
    service = SpeakerService(encoder, tmp_path / "s.db", [KEY], ServiceLimits(max_concurrent=1, queue_seconds=0.05))
    with service.model_slot():
        with pytest.raises(ServiceError) as busy:
            with service.model_slot():
                pass
    assert busy.value.status == 503 and busy.value.code == "busy"
    with service.model_slot():  # released again
        pass


def test_a_spoof_gate_rejects_with_its_reason_naming_the_upload(encoder, tmp_path, serve):
    def gate(recording):
        return f"{recording} looks spoofed" if "fake" in str(recording) else None

    gated = SpeakerService(encoder, tmp_path / "gated.db", [KEY], spoof_gate=gate)
    with serve(create_app(gated)) as base:
        files = {"audio": ("fake.wav", speech(110, 1)), "audio_b": ("real.wav", speech(110, 2))}
        decision = httpx.post(f"{base}/verify", files=files).json()
        assert decision["decision"] == "rejected" and decision["accepted"] is False
        assert decision["reason"] == "fake.wav looks spoofed"  # the client's name, not the server's temporary path
        httpx.post(
            f"{base}/speakers", data={"name": "x"}, files={"audio": ("real.wav", speech(110, 2))}, headers={"X-API-Key": KEY}
        ).raise_for_status()
        identified = httpx.post(f"{base}/identify", files={"audio": ("fake.wav", speech(110, 3))}).json()
        assert identified["speaker"] == "unknown" and identified["reason"] == "fake.wav looks spoofed"


def test_a_name_with_a_slash_is_refused_so_every_enrolled_name_can_be_removed(url):
    refused = httpx.post(f"{url}/speakers", data={"name": "a/b"}, files={"audio": ("a.wav", speech(120))}, headers={"X-API-Key": KEY})
    assert refused.status_code == 400 and "without '/'" in refused.json()["error"]["message"]
    assert httpx.get(f"{url}/speakers").json() == {"speakers": []}


def test_at_shutdown_the_store_file_alone_holds_every_enrolment(encoder, tmp_path, serve):
    import shutil
    import sqlite3

    store = tmp_path / "speakers.db"
    service = SpeakerService(encoder, store, [KEY])
    with serve(create_app(service), lifespan="on") as base:
        for name in ("ann", "ben"):
            httpx.post(
                f"{base}/speakers", data={"name": name}, files={"audio": ("a.wav", speech(120))}, headers={"X-API-Key": KEY}
            ).raise_for_status()
    copy = tmp_path / "copy.db"
    shutil.copy(store, copy)  # the .db alone, without its -wal file
    with sqlite3.connect(copy) as connection:
        assert [row[0] for row in connection.execute("SELECT name FROM speakers ORDER BY name")] == ["ann", "ben"]


def test_diarize_returns_the_library_s_turns_as_json_and_rttm(url, service, tmp_path):
    wave, reference = pitch_conversation([(110, 2.5), (230, 2.0), (110, 1.5), (230, 3.0)])  # 11 s: over the 8 s for a recording
    response = httpx.post(f"{url}/diarize", files={"audio": ("meeting one.wav", wav_bytes(wave))})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["recording"] == "meeting one" and len(body["speakers"]) == 2 and body["exclusive"] is False
    expected = service.diarizer.diarize_waveform(wave)
    assert [(t["start"], t["end"], t["speaker"]) for t in body["turns"]] == [
        (round(s.start, 3), round(s.end, 3), s.speaker) for s in expected
    ]
    (tmp_path / "found.rttm").write_text(body["rttm"])
    from_rttm = read_rttm(tmp_path / "found.rttm")
    assert {s.recording for s in from_rttm} == {"meeting_one"} and len(from_rttm) == len(body["turns"])  # one RTTM field
    one = httpx.post(f"{url}/diarize", files={"audio": ("m.wav", wav_bytes(wave))}, data={"num_speakers": "1", "exclusive": "true"}).json()
    assert one["speakers"] == ["speaker_0"] and one["exclusive"] is True


@pytest.mark.parametrize(
    "name,content,options,status,code",
    [
        ("empty.wav", b"", {}, 422, "empty_audio"),
        ("corrupt.wav", b"RIFF\x00\x00garbage" * 100, {}, 422, "corrupt_audio"),
        ("silence.wav", wav_bytes(np.zeros(32000, np.float32)), {}, 422, "silent_audio"),
        ("hiss.wav", wav_bytes(np.random.default_rng(0).normal(0, 1e-4, 48000).astype(np.float32)), {}, 422, "no_speech"),
        ("long.wav", wav_bytes(np.tile(synthetic_speech(1.0), 14)), {}, 413, "audio_too_long"),
        ("talk.wav", wav_bytes(synthetic_speech(2.0)), {"num_speakers": "0"}, 400, "config"),
        ("talk.wav", wav_bytes(synthetic_speech(2.0)), {"min_speakers": "3", "max_speakers": "2"}, 400, "config"),
    ],
)
def test_diarize_refuses_bad_input_with_a_json_error_naming_the_upload(url, name, content, options, status, code):
    response = httpx.post(f"{url}/diarize", files={"audio": (name, content)}, data=options)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and "/tmp" not in error["message"] and "Traceback" not in response.text
    assert code == "config" or error["message"].startswith(name)
    if code == "audio_too_long":
        assert error["message"] == "long.wav: 21.0 s of audio; this service takes at most 20 s per recording to diarize"


def test_a_service_without_a_diarizer_says_so(encoder, tmp_path, serve):
    with serve(create_app(SpeakerService(encoder, tmp_path / "s.db"))) as other:
        response = httpx.post(f"{other}/diarize", files={"audio": ("talk.wav", speech(120))})
    assert response.status_code == 501 and response.json()["error"]["code"] == "diarization_disabled"
