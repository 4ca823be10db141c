"""Load test of the HTTP service on loopback: verify requests (two 3-5 s dev recordings each) at concurrency 1, 4, 16.

Starts `cli.py serve` as its own process (default system unless `--checkpoint_file`; the toolkit's default runtime,
ONNX Runtime, unless `--runtime keras`), sends `--requests` verify requests per level from that many client threads, and reports
requests/s, p50/p99 latency, errors (must be 0) and the server's peak resident memory (VmHWM).
Prints one line, writes benchmarks/results/service_<runtime>.json.

    python benchmarks/service.py [--requests 48] [--runtime onnx|keras] [--checkpoint_file M]
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import soundfile as sf
from common import ROOT, require_shared_data, write_result

from deep_speaker.exported import DEFAULT_RUNTIME, RUNTIMES

LEVELS = (1, 4, 16)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def peak_memory_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    import httpx

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=48, help="verify requests per concurrency level")
    parser.add_argument("--runtime", choices=RUNTIMES, default=DEFAULT_RUNTIME)
    parser.add_argument("--checkpoint_file")
    args = parser.parse_args()
    dev = require_shared_data() / "speechocean762" / "dev"
    files = [p for p in sorted(dev.rglob("*.flac")) if 3.0 <= sf.info(str(p)).duration <= 5.0][:64]
    payloads = [p.read_bytes() for p in files]
    port = free_port()
    command = [sys.executable, "cli.py", "serve", "--port", str(port), "--runtime", args.runtime, "--max-concurrent", "2"]
    command += ["--store", os.path.join(tempfile.mkdtemp(), "speakers.db")]
    command += ["--checkpoint_file", args.checkpoint_file] if args.checkpoint_file else []
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                model = httpx.get(f"{url}/health").json()["model"]
                break
            except httpx.TransportError:
                if server.poll() is not None:
                    sys.exit(f"the service did not start: {server.stderr.read().decode()[-2000:]}")
                time.sleep(0.5)

        def verify(index: int) -> tuple[float, int]:
            a, b = index % len(files), (index * 7 + 3) % len(files)
            started = time.perf_counter()
            response = httpx.post(
                f"{url}/verify", files={"audio": (files[a].name, payloads[a]), "audio_b": (files[b].name, payloads[b])}, timeout=120
            )
            return time.perf_counter() - started, response.status_code

        verify(0)  # warm-up (graph tracing)
        levels = {}
        for concurrency in LEVELS:
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                outcomes = list(pool.map(verify, range(args.requests)))
            elapsed = time.perf_counter() - started
            latencies = np.array([seconds for seconds, _ in outcomes])
            levels[concurrency] = {
                "requests_per_second": round(args.requests / elapsed, 2),
                "p50_ms": round(1000 * float(np.percentile(latencies, 50)), 1),
                "p99_ms": round(1000 * float(np.percentile(latencies, 99)), 1),
                "errors": sum(code != 200 for _, code in outcomes),
            }
        memory = peak_memory_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    result = {
        "command": f"python benchmarks/service.py --requests {args.requests} --runtime {args.runtime}"
        + (f" --checkpoint_file {args.checkpoint_file}" if args.checkpoint_file else ""),
        "model": model,
        "runtime": args.runtime,
        "requests_per_level": args.requests,
        "levels": levels,
        "server_peak_memory_mb": round(memory, 1),
    }
    path = write_result(f"service_{args.runtime}", result)
    print(
        f"service ({args.runtime}, model {model}): "
        + "; ".join(
            f"c={c}: {v['requests_per_second']} req/s, p50 {v['p50_ms']} ms, p99 {v['p99_ms']} ms, {v['errors']} errors"
            for c, v in levels.items()
        )
        + f"; server peak {memory:.0f} MB -> {path}"
    )


if __name__ == "__main__":
    main()
