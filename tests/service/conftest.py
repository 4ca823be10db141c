"""A real HTTP server on loopback (uvicorn in a thread) around a `SpeakerService`."""

import threading
import time
from contextlib import contextmanager

import pytest
import uvicorn


@contextmanager
def serving(app, lifespan: str = "off"):
    """Run `app` on 127.0.0.1 at a free port; yields its base URL; stops it afterwards (`lifespan="on"`: with the
    app's start-up and shutdown)."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan=lifespan))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def serve():
    return serving
