"""End-to-end embedding throughput: the reference's pipeline against ours, same files, crops and weights.

(a) reference: librosa.load, psf fbank, per-frame normalisation loop, random 160-frame crop,
    `model.predict` in batches of 32;
(b) ours: soundfile + soxr, vectorised features in threads overlapping the forward pass, batches of 32
    through an XLA-compiled copy of the graph (compiled in the warm-up, whose time is reported);
(c) ours in bfloat16 (AVX512_BF16), checked within 1e-2 cosine of fp32;
(d) ours on whole utterances (no crop).
Each path runs in its own process (so peak memory is its own) on the speechocean762 dev files with the
published ResCNN layout (fixture weights). (a) and (b) alternate for `--rounds` rounds and each is
reported by its median run, so a slow spell of a shared host does not land on one side only.
Prints one line, writes benchmarks/results/embed.json.

    python benchmarks/embed.py [--files N] [--rounds 3]
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import ROOT, reference_read_mfcc, require_shared_data, write_result

CHECKPOINT = ROOT.parent / "shared" / "fixtures" / "deep_speaker_legacy" / "rescnn_triplet_layout.h5.gz"
BATCH = 32


def rescnn_flops(model, frames: int = 160) -> float:
    """Multiply-adds x 2 of every Conv2D and Dense layer for one crop of `frames` frames."""
    import keras

    from deep_speaker.models.speaker_model import backbone_of

    flops = 0.0
    height, width = frames, 64
    for layer in backbone_of(model).layers:
        if isinstance(layer, keras.layers.Conv2D):
            height, width = -(-height // layer.strides[0]), -(-width // layer.strides[1])
            kh, kw, cin, cout = layer.kernel.shape
            flops += 2 * height * width * kh * kw * cin * cout
        elif isinstance(layer, keras.layers.Dense):
            flops += 2 * np.prod(layer.kernel.shape)
    return flops


def matmul_peak_gflops(size: int = 2048, repeats: int = 10) -> float:
    """fp32 matmul throughput of this machine through the same TensorFlow runtime."""
    import tensorflow as tf

    a = tf.random.normal((size, size))
    tf.linalg.matmul(a, a).numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        result = tf.linalg.matmul(a, a)
    result.numpy()
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def bf16_agreement(checkpoint: Path, files: list[str]) -> float:
    """Smallest cosine between fp32 and bf16 embeddings of a trained model (crops of the same files)."""
    from deep_speaker.embedding import SpeakerEncoder
    from deep_speaker.features import NUM_FRAMES

    fp32 = SpeakerEncoder(checkpoint, crop_frames=NUM_FRAMES).embed_many(files)
    bf16 = SpeakerEncoder(checkpoint, crop_frames=NUM_FRAMES, bfloat16=True).embed_many(files)
    return float(np.min(np.sum(fp32 * bf16, axis=1) / np.linalg.norm(bf16, axis=1)))


def run_path(path: str, files: list[str]) -> dict:
    from deep_speaker.embedding import SpeakerEncoder
    from deep_speaker.features import NUM_FRAMES, crop_or_pad
    from deep_speaker.model_files import load_model
    from deep_speaker.models import feature_model

    model = load_model(CHECKPOINT)
    warmup_start = time.perf_counter()
    if path == "reference":
        reference_model = feature_model(model)  # the reference's model: features in, plain `predict`
        reference_model.predict(np.zeros((BATCH, NUM_FRAMES, 64), np.float32), verbose=0)
        warmup_seconds = time.perf_counter() - warmup_start
        rng = np.random.default_rng(123)
        start = time.perf_counter()
        features = [reference_read_mfcc(f) for f in files]
        feature_seconds = time.perf_counter() - start
        crops = np.stack([crop_or_pad(f, NUM_FRAMES, rng) for f in features])
        forward_start = time.perf_counter()
        embeddings = reference_model.predict(crops, batch_size=BATCH, verbose=0)
        forward_seconds = time.perf_counter() - forward_start
        total = time.perf_counter() - start
    else:
        encoder = SpeakerEncoder(
            model=model, crop_frames=None if path == "ours_full" else NUM_FRAMES, batch_size=BATCH, bfloat16=path == "ours_bf16"
        )
        # one full batch and a tail as long as the timed run's last batch: every shape it meets is compiled
        encoder.embed_many(files[: BATCH + len(files) % BATCH])
        warmup_seconds = time.perf_counter() - warmup_start
        start = time.perf_counter()
        features = [encoder.features(f) for f in files]
        feature_seconds = time.perf_counter() - start
        forward_start = time.perf_counter()
        encoder.embed_features(features)
        forward_seconds = time.perf_counter() - forward_start
        start = time.perf_counter()
        embeddings = encoder.embed_many(files)
        total = time.perf_counter() - start
    return {
        "seconds": total,
        "utterances_per_second": len(files) / total,
        "feature_seconds": feature_seconds,
        "forward_seconds": forward_seconds,
        "warmup_seconds": warmup_seconds,
        "frames": int(sum(f.shape[0] for f in features)),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "embeddings": embeddings.tolist(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of (a) and (b)")
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument(
        "--trained",
        default=str(ROOT / "deep_speaker" / "pretrained" / "deep_speaker.keras"),
        help="trained model for the bf16 accuracy check",
    )
    args = parser.parse_args()
    files = [str(p) for p in sorted((require_shared_data() / "speechocean762" / "dev").rglob("*.flac"))[: args.files]]
    if args.path:
        print(json.dumps(run_path(args.path, files)))
        return

    for path in files:
        open(path, "rb").read()
    runs = {path: [] for path in ("reference", "ours", "ours_bf16", "ours_full")}
    for path in ["reference", "ours"] * args.rounds + ["ours_bf16", "ours_full"]:
        command = [sys.executable, __file__, "--path", path] + (["--files", str(args.files)] if args.files else [])
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        runs[path].append(json.loads(output.strip().splitlines()[-1]))
    results = {path: sorted(path_runs, key=lambda run: run["seconds"])[len(path_runs) // 2] for path, path_runs in runs.items()}
    round_speedups = [r["seconds"] / o["seconds"] for r, o in zip(runs["reference"], runs["ours"])]

    from deep_speaker.model_files import load_model

    flops = rescnn_flops(load_model(CHECKPOINT))
    peak = matmul_peak_gflops()
    embeddings = {k: np.array(v.pop("embeddings")) for k, v in results.items()}
    bf16_cosine = float(np.min(np.sum(embeddings["ours"] * embeddings["ours_bf16"], axis=1)))
    trained_bf16_cosine = bf16_agreement(Path(args.trained), files) if Path(args.trained).is_file() else None
    hours = results["ours_full"]["frames"] / 100 / 3600
    for name, result in results.items():
        result["runs_seconds"] = [run["seconds"] for run in runs[name]]
        if name != "ours_full":
            result["forward_gflops_per_second"] = flops * len(files) / result["forward_seconds"] / 1e9
        result["feature_seconds_per_hour"] = result["feature_seconds"] / hours
    speedup = results["ours"]["utterances_per_second"] / results["reference"]["utterances_per_second"]
    bf16_speedup = results["ours_bf16"]["utterances_per_second"] / results["reference"]["utterances_per_second"]
    summary = {
        "files": len(files),
        "gflop_per_crop": flops / 1e9,
        "fp32_matmul_peak_gflops": peak,
        "speedup_fp32": speedup,
        "speedup_fp32_per_round": round_speedups,
        "speedup_bf16": bf16_speedup,
        "bf16_min_cosine_to_fp32": bf16_cosine,
        "bf16_min_cosine_to_fp32_trained_model": trained_bf16_cosine,
        "trained_model": args.trained,
        "paths": results,
    }
    out = write_result("embed", summary)
    r, o, b, f = (results[k] for k in ("reference", "ours", "ours_bf16", "ours_full"))
    print(
        f"embed: reference {r['utterances_per_second']:.1f} utt/s, ours {o['utterances_per_second']:.1f} utt/s ({speedup:.2f}x, medians of {args.rounds} alternating rounds; "
        f"per round {', '.join(f'{x:.2f}x' for x in round_speedups)}), "
        f"ours bf16 {b['utterances_per_second']:.1f} utt/s ({bf16_speedup:.2f}x, min cosine to fp32 {bf16_cosine:.4f} on fixture weights, "
        f"{trained_bf16_cosine if trained_bf16_cosine is None else f'{trained_bf16_cosine:.4f}'} on the trained model), "
        f"full utterances {f['utterances_per_second']:.1f} utt/s; features {r['feature_seconds_per_hour']:.1f} vs "
        f"{o['feature_seconds_per_hour']:.1f} s/h; forward {o['forward_gflops_per_second']:.0f} GFLOP/s fp32 "
        f"(peak {peak:.0f}), {b['forward_gflops_per_second']:.0f} bf16; peak RSS {r['peak_rss_mb']:.0f} vs {o['peak_rss_mb']:.0f} MB "
        f"[{out.relative_to(ROOT)}]"
    )


if __name__ == "__main__":
    main()
