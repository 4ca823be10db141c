"""Feature extraction speed: ours (vectorised) against the reference (psf fbank + per-frame loop).

Both run on the same trimmed waveforms of the speechocean762 dev set in one process, one core's worth of
work each, several repeats, best repeat kept. Prints one line, writes benchmarks/results/features.json.

    python benchmarks/features.py [--repeats 3] [--files N]
"""

import argparse
import time

import numpy as np
from common import reference_mfcc_fbank, reference_read_audio, reference_trim, require_shared_data, write_result

from deep_speaker.audio import load_speech
from deep_speaker.features import compute_features


def best_time(function, inputs, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for item in inputs:
            function(item)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--files", type=int, default=None)
    args = parser.parse_args()

    files = sorted((require_shared_data() / "speechocean762" / "dev").rglob("*.flac"))[: args.files]
    signals = [load_speech(path) for path in files]
    hours = sum(s.size for s in signals) / 16000 / 3600
    for ours, reference in zip(signals[:20], signals[:20]):
        assert np.abs(compute_features(ours) - reference_mfcc_fbank(reference)).max() <= 1e-5

    ours = best_time(compute_features, signals, args.repeats) / hours
    reference = best_time(reference_mfcc_fbank, signals, args.repeats) / hours
    ours_e2e = best_time(lambda p: compute_features(load_speech(p)), files, 1) / hours
    reference_e2e = best_time(lambda p: reference_mfcc_fbank(reference_trim(reference_read_audio(p))), files, 1) / hours

    result = {
        "files": len(files),
        "audio_hours_after_trim": hours,
        "features_seconds_per_hour": {"ours": ours, "reference": reference, "speedup": reference / ours},
        "with_decoding_seconds_per_hour": {"ours": ours_e2e, "reference": reference_e2e, "speedup": reference_e2e / ours_e2e},
    }
    path = write_result("features", result)
    print(
        f"features: ours {ours:.2f} s/h, reference (psf + loop) {reference:.2f} s/h, {reference / ours:.1f}x faster; "
        f"with decoding {ours_e2e:.2f} vs {reference_e2e:.2f} s/h ({reference_e2e / ours_e2e:.1f}x) "
        f"on {len(files)} files, {hours:.3f} h [{path.relative_to(path.parents[2])}]"
    )


if __name__ == "__main__":
    main()
