"""Exported runtimes against Keras: end-to-end throughput, parity and dev EER of every export variant.

One process, the same files for every side: the shipped model (or `--model`) through Keras (NumPy features +
the feature-in graph, as `SpeakerEncoder` runs by default) and through its exports - ONNX (ONNX Runtime),
ONNX int8, SavedModel, TFLite, TFLite float16, TFLite int8 - each a waveform-in graph with the front end inside.
Throughput: Keras and ONNX Runtime embed the first `--files` dev recordings end to end (decode, trim, features,
model) in alternating rounds, each reported by its median round. Parity and EER: every variant embeds all dev
recordings; max |difference| from Keras, and the dev trial list's EER and its change.
Prints one line, writes benchmarks/results/runtime.json.

    python benchmarks/runtime.py [--model M.keras] [--files 100] [--rounds 3]
"""

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from common import ROOT, require_shared_data, write_result

VARIANTS = [  # (name, format, quantisation, file name)
    ("onnx", "onnx", None, "model.onnx"),
    ("onnx-int8", "onnx", "int8", "model_int8.onnx"),
    ("savedmodel", "savedmodel", None, "savedmodel"),
    ("tflite", "tflite", None, "model.tflite"),
    ("tflite-float16", "tflite", "float16", "model_float16.tflite"),
    ("tflite-int8", "tflite", "int8", "model_int8.tflite"),
]


def main() -> None:
    from deep_speaker.embedding import DEFAULT_CHECKPOINT, ExportedEncoder, SpeakerEncoder
    from deep_speaker.evaluation import Trials, score_trials, verification_result
    from deep_speaker.model_files import load_model
    from deep_speaker.tf.export import export_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--files", type=int, default=100, help="recordings per throughput round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    data = require_shared_data() / "speechocean762"
    trials = Trials.read(data / "dev_trials.txt")
    names = trials.files()
    paths = [data / "dev" / name for name in names]
    work = ROOT / "benchmarks" / "work" / "runtime"

    model = load_model(args.model)
    exports = {}
    for name, model_format, quantisation, file_name in VARIANTS:
        started = time.perf_counter()
        metadata = export_model(model, work / file_name, model_format, quantisation, force=True, source=args.model)
        exports[name] = {
            "path": work / file_name,
            "export_seconds": round(time.perf_counter() - started, 1),
            "probe_min_cosine": metadata.min_cosine,
        }

    keras_encoder = SpeakerEncoder(model=model, jit_compile=False)
    onnx_encoder = ExportedEncoder(exports["onnx"]["path"])
    throughput = {"keras": [], "onnx": []}
    sample = paths[: args.files]
    for encoder in (keras_encoder, onnx_encoder):  # warm-up: graph tracing, session start
        encoder.embed_many(sample[:8])
    for _ in range(args.rounds):
        for name, encoder in (("keras", keras_encoder), ("onnx", onnx_encoder)):
            started = time.perf_counter()
            encoder.embed_many(sample)
            throughput[name].append(len(sample) / (time.perf_counter() - started))
    speed = {name: round(statistics.median(rounds), 2) for name, rounds in throughput.items()}

    def evaluate(encoder):
        vectors = encoder.embed_many(paths, progress=True)
        result = verification_result(score_trials(dict(zip(names, vectors)), trials), trials.labels)
        return vectors, result.eer

    reference, keras_eer = evaluate(keras_encoder)
    variants = {}
    for name, info in exports.items():
        vectors, eer = evaluate(ExportedEncoder(info["path"]))
        variants[name] = {
            "max_abs_difference": float(np.max(np.abs(vectors - reference))),
            "min_cosine": float(np.min(np.sum(vectors * reference, axis=1))),
            "dev_eer_percent": round(100 * eer, 2),
            "eer_change_points": round(100 * (eer - keras_eer), 2),
            "export_seconds": info["export_seconds"],
            "size_bytes": sum(f.stat().st_size for f in Path(info["path"]).rglob("*"))
            if Path(info["path"]).is_dir()
            else Path(info["path"]).stat().st_size,
        }
    result = {
        "command": "python benchmarks/runtime.py " + f"--files {args.files} --rounds {args.rounds}",
        "model": str(Path(args.model).resolve().relative_to(ROOT)) if Path(args.model).resolve().is_relative_to(ROOT) else args.model,
        "utterances_per_second": speed,
        "rounds": {name: [round(r, 2) for r in rounds] for name, rounds in throughput.items()},
        "keras_dev_eer_percent": round(100 * keras_eer, 2),
        "variants": variants,
    }
    path = write_result("runtime", result)
    print(
        f"runtime: keras {speed['keras']} utt/s, onnx {speed['onnx']} utt/s ({speed['onnx'] / speed['keras']:.2f}x); dev EER keras "
        f"{100 * keras_eer:.2f} %, "
        + ", ".join(f"{n} {v['dev_eer_percent']:.2f} % (max diff {v['max_abs_difference']:.1e})" for n, v in variants.items())
        + f" -> {path}"
    )


if __name__ == "__main__":
    main()
