"""The exported front end in float64 (as shipped) against float32, on ONNX Runtime: speed and agreement with Keras.

Each shipped member is exported twice (its `Fbank` precision float64, then float32: `tf.export.for_tflite`'s clone
without unrolling), both copies run on the same 3 s probe recordings on 2 threads in alternating rounds, and their
embeddings are compared with Keras's on probes of 1.3 to 7.9 s.

    python benchmarks/front_end_precision.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import keras
import numpy as np
from common import ROOT, write_result

from deep_speaker.layers import Fbank
from deep_speaker.model_files import load_model
from deep_speaker.tf.export import _signature, probe_waveforms

MEMBERS = ("deep_speaker", "ge2e_resemblyzer")


def with_precision(model: keras.Model, precision: str) -> keras.Model:
    def clone_layer(layer):
        config = layer.get_config()
        if isinstance(layer, Fbank):
            config["precision"] = precision
        return layer.__class__.from_config(config)

    clone = keras.models.clone_model(model, clone_function=clone_layer, recursive=True)
    clone.set_weights(model.get_weights())
    return clone


def main() -> None:
    import onnxruntime

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    probes = probe_waveforms(16000, seconds=(1.3, 3.7, 7.9))
    timed = probe_waveforms(16000, seconds=(3.0,) * 8, seed=1)
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for member in MEMBERS:
            model = load_model(ROOT / "deep_speaker" / "pretrained" / f"{member}.keras")
            sessions, result = {}, {}
            for precision in ("float64", "float32"):
                path = Path(folder) / f"{member}_{precision}.onnx"
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    with_precision(model, precision).export(str(path), format="onnx", input_signature=_signature(), verbose=False)
                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = 2
                sessions[precision] = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                name = sessions[precision].get_inputs()[0].name
                found = [sessions[precision].run(None, {name: w[None]})[0][0] for w in probes]
                expected = [np.asarray(model.predict_on_batch(w[None]))[0] for w in probes]
                result[precision] = {
                    "max_abs_difference_vs_keras": float(max(np.max(np.abs(a - b)) for a, b in zip(found, expected))),
                    "ms": [],
                }
            for _ in range(args.rounds):
                for precision, session in sessions.items():
                    name = session.get_inputs()[0].name
                    started = time.perf_counter()
                    for waveform in timed:
                        session.run(None, {name: waveform[None]})
                    result[precision]["ms"].append(1000 * (time.perf_counter() - started) / len(timed))
            results[member] = result
            print(
                f"  {member}: ms per 3 s recording, float64 {', '.join(f'{m:.1f}' for m in result['float64']['ms'])}; float32 "
                f"{', '.join(f'{m:.1f}' for m in result['float32']['ms'])}; max |difference| from Keras "
                f"{result['float64']['max_abs_difference_vs_keras']:.1e} / {result['float32']['max_abs_difference_vs_keras']:.1e}",
                flush=True,
            )
    path = write_result("front_end_precision", {"rounds": args.rounds, "members": results})
    ratios = {m: np.median(r["float32"]["ms"]) / np.median(r["float64"]["ms"]) for m, r in results.items()}
    print(
        "front_end_precision: float32 / float64 time on ONNX Runtime "
        + ", ".join(f"{m} {ratio:.2f}" for m, ratio in ratios.items())
        + f" (1.00 = no gain) [{path.name}]"
    )


if __name__ == "__main__":
    main()
