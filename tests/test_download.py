"""Checkpoint download over loopback HTTP: resume after a dropped connection, SHA-256 refusal, web pages refused."""

import hashlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deep_speaker.download import PUBLISHED, DownloadError, download, download_checkpoint
from tests.helpers import cli_in_process

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class Server:
    """Serves PAYLOAD at /file with Range support; the first `drop_after` bytes of a full request and then the
    connection closes (a dropped download); /page answers HTML."""

    def __init__(self, drop_after: int | None = None, endless: bool = False, trickle: float | None = None):
        self.ranges, self.drop_after, self.endless, self.trickle = [], drop_after, endless, trickle
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path == "/page":
                    body = b"<html>Google Drive - quota exceeded</html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if server.endless or server.trickle:  # no length announced: bytes for ever, or one at a time
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.end_headers()
                    try:
                        for _ in range(10_000):
                            self.wfile.write(PAYLOAD[:1] if server.trickle else PAYLOAD)
                            self.wfile.flush()
                            time.sleep(server.trickle or 0)
                    except OSError:  # the client hung up
                        pass
                    return
                start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
                server.ranges.append(self.headers.get("Range"))
                body = PAYLOAD[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.drop_after is not None and not start:
                    self.wfile.write(body[: server.drop_after])
                    self.wfile.flush()
                    self.connection.close()  # the client sees a short read
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()


SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_a_dropped_download_resumes_from_where_it_stopped(tmp_path):
    target = tmp_path / "model.h5"
    with Server(drop_after=300_000) as server:
        with pytest.raises(DownloadError, match="run the same command again to resume"):
            download(f"{server.url}/file", target, SHA, len(PAYLOAD), progress=False)
        assert not target.exists() and (tmp_path / "model.h5.part").stat().st_size == 300_000
        download(f"{server.url}/file", target, SHA, len(PAYLOAD), progress=False)
    assert server.ranges == [None, "bytes=300000-"]
    assert target.read_bytes() == PAYLOAD and not (tmp_path / "model.h5.part").exists()
    with Server() as again:  # already there and verified: nothing is fetched
        download(f"{again.url}/file", target, SHA, len(PAYLOAD), progress=False)
    assert again.ranges == []


def test_a_file_with_another_hash_is_refused_and_deleted(tmp_path):
    with Server() as server, pytest.raises(DownloadError, match="refused: got 1,048,576 bytes with SHA-256"):
        download(f"{server.url}/file", tmp_path / "model.h5", "0" * 64, len(PAYLOAD), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_web_page_instead_of_the_file_is_a_clear_error(tmp_path):
    with Server() as server, pytest.raises(DownloadError, match="web page, not the file.*drive.google.com"):
        download(f"{server.url}/page", tmp_path / "model.h5", SHA, len(PAYLOAD), progress=False, page="https://drive.google.com/file/d/x")


def test_published_checkpoints_and_the_command_refuse_a_mirror_with_other_bytes(tmp_path, capsys):
    assert PUBLISHED["triplet"].size == 97_054_080 and PUBLISHED["triplet"].sha256.startswith("995f4f51")
    assert PUBLISHED["softmax"].size == 296_364_940 and PUBLISHED["softmax"].sha256.endswith("71cc0c2")
    with Server() as server:
        result = cli_in_process(
            capsys, "download-checkpoint", "triplet", "--output_dir", tmp_path, "--url", f"{server.url}/file", "--quiet"
        )
    assert result.returncode != 0 and "995f4f51" in result.stderr and "refused: got 1,048,576 bytes" in result.stderr
    with pytest.raises(DownloadError, match="unknown checkpoint"):
        download_checkpoint("lstm", tmp_path)


def test_a_linked_part_file_is_never_written_through(tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    (tmp_path / "model.h5.part").symlink_to(precious)
    with Server() as server, pytest.raises(DownloadError, match=r"model.h5.part: is a link or not a plain file"):
        download(f"{server.url}/file", tmp_path / "model.h5", SHA, len(PAYLOAD), progress=False)
    assert precious.read_text() == "keep me" and server.ranges == []


def test_an_endless_or_trickling_server_is_cut_off(tmp_path):
    with Server(endless=True) as server, pytest.raises(DownloadError, match=r"sent more than the 1,048,576 bytes of the published file"):
        download(f"{server.url}/file", tmp_path / "endless.h5", SHA, len(PAYLOAD), progress=False)
    assert (tmp_path / "endless.h5.part").stat().st_size <= len(PAYLOAD)
    started = time.monotonic()
    with (
        Server(trickle=0.1) as server,
        pytest.raises(DownloadError, match=r"did not finish before its deadline .*run the same command again to resume"),
    ):
        download(f"{server.url}/file", tmp_path / "slow.h5", SHA, len(PAYLOAD), progress=False, deadline=0.5)
    assert time.monotonic() - started < 10


def test_a_url_that_is_no_address_is_a_clear_error(tmp_path, capsys):
    result = cli_in_process(capsys, "download-checkpoint", "triplet", "--output_dir", tmp_path, "--url", "notaurl", "--quiet")
    assert result.returncode == 2 and "notaurl: not an http:// or https:// address" in result.stderr and "Traceback" not in result.stderr
