"""Two service processes on one PostgreSQL store: what one enrols, the other lists and identifies at once."""

import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.helpers import ROOT

SAMPLES = ROOT / "samples" / "PhilippeRemy"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _serve(store: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    command = [sys.executable, "cli.py", "serve", "--port", str(port), "--store", store, "--api-key", "k", "--no-access-log"]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True), f"http://127.0.0.1:{port}"


def _wait(process: subprocess.Popen, url: str) -> None:
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            httpx.get(f"{url}/health", timeout=5).raise_for_status()
            return
        except httpx.HTTPError:
            if process.poll() is not None:
                pytest.fail(f"the service did not start: {process.stderr.read()[-2000:]}")
            time.sleep(0.5)
    pytest.fail("the service did not answer within 3 minutes")


@pytest.mark.slow
def test_two_service_processes_share_one_postgresql_store(postgres_url):
    servers = [_serve(postgres_url) for _ in range(2)]
    try:
        for process, url in servers:
            _wait(process, url)
        (_, first), (_, second) = servers
        recording = (SAMPLES / "PhilippeRemy_001.wav").read_bytes()
        enrolled = httpx.post(
            f"{first}/speakers", data={"name": "philippe"}, files={"audio": ("a.wav", recording)}, headers={"X-API-Key": "k"}, timeout=60
        )
        assert enrolled.status_code == 201, enrolled.text
        assert httpx.get(f"{second}/speakers").json() == {"speakers": [{"name": "philippe", "files": 1}]}
        probe = (SAMPLES / "PhilippeRemy_002.wav").read_bytes()
        identified = httpx.post(f"{second}/identify", files={"audio": ("b.wav", probe)}, timeout=60).json()
        assert identified["speaker"] == "philippe", identified
        again = httpx.post(
            f"{second}/speakers", data={"name": "philippe"}, files={"audio": ("a.wav", recording)}, headers={"X-API-Key": "k"}, timeout=60
        )
        assert again.status_code == 409  # enrolled through the other process: the name is taken in the shared store
        assert httpx.delete(f"{second}/speakers/philippe", headers={"X-API-Key": "k"}).status_code in (200, 204)
        assert httpx.get(f"{first}/speakers").json() == {"speakers": []}
    finally:
        for process, _ in servers:
            process.terminate()
            process.wait(timeout=30)
