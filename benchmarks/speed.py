"""Speed where users feel it: each shipped model on ONNX Runtime against Keras, our ports against the peers' own
PyTorch models, and every model against what this machine's matrix multiply can do.

- Runtimes: each shipped model embeds the same `--files` dev recordings (3-5 s) end to end (decode, trim, model)
  through Keras and through its ONNX Runtime copy, in alternating rounds; the median round of each; max |difference|.
- Peers (with `--peer-python`, the Python of an environment holding torch, resemblyzer and speechbrain; see
  `peers_worker.py`): Resemblyzer's PyTorch GE2E (`preprocess_wav` + `embed_utterance`) against our port of it, and
  SpeechBrain's ECAPA-TDNN (`Fbank` + sentence mean + `ECAPA_TDNN`, the size of its fixture config and its weights)
  against ours imported from the same checkpoint; same files, alternating rounds, the same thread count.
- The limit: floating-point operations per second of audio of each ONNX graph, counted from ONNX Runtime's profile
  of a 3 s recording (Conv, MatMul, Gemm, LSTM: 2 per multiply-add; element-wise work not counted); the matrix
  multiply peak measured now (NumPy and ONNX Runtime, 2048 x 2048 float32, the best); the achieved rate of each model
  embedding a batch of 16 three-second recordings on ONNX Runtime, as a fraction of that peak.
- The service (with `--service`): `benchmarks/service.py` on the default runtime.
Prints one line, writes benchmarks/results/speed.json.

    python benchmarks/speed.py [--files 40] [--rounds 3] [--peer-python benchmarks/work/peers/bin/python] [--service]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from common import ROOT, require_shared_data, write_result

PROFILED_OPS = ("Conv", "FusedConv", "MatMul", "FusedMatMul", "Gemm", "LSTM")
WORK = ROOT / "benchmarks" / "work" / "speed"


def dev_files(count: int) -> list[Path]:
    dev = require_shared_data() / "speechocean762" / "dev"
    return [p for p in sorted(dev.rglob("*.flac")) if 3.0 <= sf.info(str(p)).duration <= 5.0][:count]


def alternating(sides: dict, rounds: int) -> dict:
    """Seconds of each side's median round; `sides`: name -> callable running one round."""
    seconds = {name: [] for name in sides}
    for _ in range(rounds):
        for name, run in sides.items():
            started = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in seconds.items()}


def graph_flops(onnx_path: Path, waveform: np.ndarray) -> int:
    """Floating-point operations of one run of an ONNX graph on `waveform` (1, samples), from ONNX Runtime's profile
    of that run (the shapes each Conv, MatMul, Gemm and LSTM node saw in the optimised graph)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(WORK / "profile")
    session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    session.run(None, {session.get_inputs()[0].name: waveform.astype(np.float32)})
    profile = Path(session.end_profiling())
    events = json.loads(profile.read_text())
    profile.unlink()
    total = 0
    for event in events:
        args = event.get("args", {})
        if event.get("cat") != "Node" or args.get("op_name") not in PROFILED_OPS or "input_type_shape" not in args:
            continue
        inputs = [next(iter(shape.values())) for shape in args["input_type_shape"]]
        output = next(iter(args["output_type_shape"][0].values()))
        total += _node_flops(args["op_name"], inputs, output)
    return total


def _node_flops(op: str, inputs: list, output: list) -> int:
    if op in ("Conv", "FusedConv"):  # weight (out, in / groups, *kernel)
        return 2 * int(np.prod(output)) * int(np.prod(inputs[1][1:]))
    if op == "LSTM":  # X (T, batch, in) -> Y (T, directions, batch, hidden); four gates of (in + hidden) multiply-adds
        steps, batch, features = inputs[0]
        directions, hidden = output[1], output[3]
        return 2 * steps * batch * directions * 4 * hidden * (features + hidden)
    depth = inputs[0][-1] if inputs[0][-2:-1] == output[-2:-1] or len(inputs[0]) == 1 else inputs[0][-2]
    return 2 * int(np.prod(output)) * int(depth)


def matmul_peak(size: int = 2048, repeats: int = 7) -> dict:
    """GFLOP/s of a float32 size x size matrix multiply: NumPy (its BLAS) and ONNX Runtime, medians of `repeats`."""
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size)).astype(np.float32) for _ in range(2))
    flops = 2 * size**3

    def rate(multiply) -> float:
        multiply()
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            multiply()
            times.append(time.perf_counter() - started)
        return flops / statistics.median(times) / 1e9

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "matmul",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [size, size]) for n in "ab"],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [size, size])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    onnx.checker.check_model(model)
    return {"numpy_gflops": rate(lambda: a @ b), "onnxruntime_gflops": rate(lambda: session.run(None, {"a": a, "b": b}))}


def batch_rate(onnx_path: Path, seconds: float = 3.0, batch: int = 16, repeats: int = 5) -> float:
    """Seconds per run of a batch of `batch` speech-like recordings of `seconds` through the ONNX graph (median)."""
    from deep_speaker.exported import OnnxRunner

    runner = OnnxRunner(onnx_path)
    waveforms = np.stack([sf.read(str(p), dtype="float32")[0][: int(seconds * 16000)] for p in dev_files(batch)])
    runner(waveforms)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        runner(waveforms)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def runtimes(files, rounds: int) -> dict:
    """Keras against ONNX Runtime for each shipped model: utterances/s end to end and the largest difference."""
    from deep_speaker.assembly import load_encoder

    results = {}
    for onnx_member, keras_member in zip(load_encoder(runtime="onnx").members, load_encoder(runtime="keras").members):
        name = keras_member.checkpoint.stem
        embeddings = {}
        sides = {
            runtime: (lambda encoder=encoder, runtime=runtime, kept=embeddings: kept.__setitem__(runtime, encoder.embed_many(files)))
            for runtime, encoder in (("keras", keras_member), ("onnx", onnx_member))
        }
        sides["keras"](), sides["onnx"]()  # warm-up (graph tracing, session start)
        seconds = alternating(sides, rounds)
        results[name] = {
            "keras_utt_per_s": len(files) / seconds["keras"],
            "onnx_utt_per_s": len(files) / seconds["onnx"],
            "speedup": seconds["keras"] / seconds["onnx"],
            "max_abs_difference": float(np.abs(embeddings["keras"] - embeddings["onnx"]).max()),
        }
    return results


def ours_against_peers(files, rounds: int, peer_python: str) -> dict:
    """Resemblyzer's and SpeechBrain's own PyTorch pipelines against our ports, alternating rounds on `files`."""
    from deep_speaker.assembly import load_encoder
    from deep_speaker.checkpoints import save_model
    from deep_speaker.importers import import_model
    from deep_speaker.score_fusion import DEFAULT_SYSTEM

    fixtures = ROOT.parent / "shared" / "fixtures" / "pytorch_import"
    imported = WORK / "speechbrain_ecapa.keras"
    if not imported.is_file():
        save_model(import_model("speechbrain", fixtures / "speechbrain" / "ecapa_embedding_model.ckpt"), imported)
    ours = {"resemblyzer": load_encoder(DEFAULT_SYSTEM.parent / "ge2e_resemblyzer.keras"), "speechbrain": load_encoder(imported)}
    worker = subprocess.Popen(
        [peer_python, str(ROOT / "benchmarks" / "peers_worker.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )

    def ask(request: dict) -> dict:
        worker.stdin.write(json.dumps(request) + "\n")
        worker.stdin.flush()
        return json.loads(worker.stdout.readline())

    threads = os.cpu_count()
    loaded = ask(
        {
            "op": "load",
            "threads": threads,
            "resemblyzer": str(fixtures / "resemblyzer" / "pretrained.pt"),
            "speechbrain": str(fixtures / "speechbrain" / "ecapa_embedding_model.ckpt"),
            "speechbrain_config": str(fixtures / "speechbrain" / "ecapa_config.json"),
        }
    )
    paths = [str(p) for p in files]
    results = {}
    try:
        for peer, encoder in ours.items():
            replies = []
            sides = {
                "ours": lambda encoder=encoder: encoder.embed_many(files),
                "peer": lambda peer=peer, replies=replies: replies.append(ask({"op": "round", "model": peer, "files": paths})),
            }
            sides["ours"](), sides["peer"]()  # warm-up
            seconds = alternating(sides, rounds)
            peer_seconds = statistics.median(reply["seconds"] for reply in replies)  # the peer's own timing, without the pipe
            cosines = np.sum(encoder.embed_many(files) * np.array(replies[-1]["embeddings"]), axis=1)
            results[peer] = {
                "ours_utt_per_s": len(files) / seconds["ours"],
                "peer_utt_per_s": len(files) / peer_seconds,
                "speedup": peer_seconds / seconds["ours"],
                "min_cosine_to_peer": float(cosines.min()),
            }
    finally:
        worker.stdin.close()
        worker.wait(timeout=60)
    return {"torch": loaded["torch"], "threads": loaded["threads"], **results}


def limits(peak: float) -> dict:
    """FLOPs per second of audio of each shipped ONNX graph and its achieved share of the matmul peak on a batch."""
    from deep_speaker.score_fusion import DEFAULT_SYSTEM

    waveform = sf.read(str(dev_files(1)[0]), dtype="float32")[0][None, :48000]
    results = {}
    for name in ("deep_speaker", "ge2e_resemblyzer"):
        path = DEFAULT_SYSTEM.parent / f"{name}.onnx"
        flops = graph_flops(path, waveform)
        seconds = batch_rate(path)
        achieved = 16 * flops / seconds / 1e9
        results[name] = {
            "gflop_per_audio_second": flops / 3.0 / 1e9,
            "batch16_seconds": seconds,
            "achieved_gflops": achieved,
            "fraction_of_peak": achieved / peak,
        }
    return results


def service() -> dict:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "service.py"), "--runtime", "onnx"], capture_output=True, text=True, cwd=ROOT
    )
    if done.returncode != 0:
        sys.exit(f"benchmarks/service.py failed: {done.stderr[-2000:]}")
    return json.loads((ROOT / "benchmarks" / "results" / "service_onnx.json").read_text())["levels"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=40, help="recordings per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peer-python", help="Python of an environment with torch, resemblyzer and speechbrain")
    parser.add_argument("--service", action="store_true", help="also run benchmarks/service.py (about 1 min)")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DEEP_SPEAKER_HOME", tempfile.mkdtemp())  # exports of the imported peer model stay out of ~
    files = dev_files(args.files)
    peak = matmul_peak()
    result = {
        "command": f"python benchmarks/speed.py --files {args.files} --rounds {args.rounds}"
        + (" --peer-python PEERS" if args.peer_python else "")
        + (" --service" if args.service else ""),
        "files": len(files),
        "matmul_peak": peak,
        "runtimes": runtimes(files, args.rounds),
        "limits": limits(max(peak.values())),
    }
    if args.peer_python:
        result["peers"] = ours_against_peers(files, args.rounds, args.peer_python)
    if args.service:
        result["service_onnx"] = service()
    path = write_result("speed", result)
    summary = [f"matmul peak {max(peak.values()):.0f} GFLOP/s"]
    summary += [f"{n}: onnx {r['speedup']:.2f}x keras ({r['onnx_utt_per_s']:.1f} utt/s)" for n, r in result["runtimes"].items()]
    summary += [
        f"{n}: {r['gflop_per_audio_second']:.2f} GFLOP/audio-s, {100 * r['fraction_of_peak']:.0f} % of peak"
        for n, r in result["limits"].items()
    ]
    summary += [
        f"vs {n}: {r['speedup']:.2f}x (cos {r['min_cosine_to_peer']:.4f})"
        for n, r in result.get("peers", {}).items()
        if isinstance(r, dict)
    ]
    if args.service:
        summary += [f"service c={c}: {v['requests_per_second']} req/s p99 {v['p99_ms']} ms" for c, v in result["service_onnx"].items()]
    print("speed: " + "; ".join(summary) + f" -> {path}")


if __name__ == "__main__":
    main()
