"""False refusals of the speech check on every real recording we have, and what it still refuses.

Speech: every recording of speechocean762 train and dev, `asc` and the sample files, trimmed as our model's encoder
trims it (`load_speech`), whole and as `CROPS_PER_LENGTH` seeded crops of 1, 2 and 3 s of that speech, each crop
trimmed again as the encoder would trim a file that short. Non-speech: white, pink and brown noise, mains hum and
1-bit dither, 1 to 60 s, loud and quiet, several seeds: all must be refused. The recorded noises of
`../shared/data/noise` (not all stationary) are listed for information.

    python benchmarks/speech_check.py

Prints one line, writes benchmarks/results/speech_check.json.
"""

from __future__ import annotations

import numpy as np
from common import require_shared_data, write_result
from tqdm import tqdm

from deep_speaker.audio import crop_waveform, load_speech, read_audio, trim_silence
from deep_speaker.features import MIN_SPEECH_VARIATION_DB, spectro_temporal_variation, speech_check_energies
from tests.helpers import noise  # the non-speech signals the tests refuse (common puts the project root on the path)

CROP_SECONDS = (1, 2, 3)
CROPS_PER_LENGTH = 3
NOISE_SECONDS = (1, 3, 10, 60)
NOISE_SEEDS = range(3)


def variation(samples: np.ndarray) -> float:
    return spectro_temporal_variation(speech_check_energies(samples))


def refusals(values: list[float]) -> dict:
    """How many of `values` the check refuses (NaN: too short to judge, passed), and the lowest values seen."""
    values = np.asarray(values)
    refused = values < MIN_SPEECH_VARIATION_DB
    return {
        "count": int(values.size),
        "refused": int(refused.sum()),
        "rate": float(refused.mean()),
        "lowest_db": np.sort(values[np.isfinite(values)])[:5].round(2).tolist(),
    }


def main() -> None:
    data = require_shared_data()
    files = (
        sorted((data / "speechocean762").rglob("*.flac"))
        + sorted((data / "asc").rglob("*.flac"))
        + sorted((data / "samples").rglob("*.wav"))
        + sorted((data / "samples").glob("*.flac"))
    )
    speech: dict[str, list[float]] = {"whole": [], **{f"{s} s crops": [] for s in CROP_SECONDS}}
    worst: dict[str, tuple[float, str]] = {}
    rng = np.random.default_rng(0)
    for path in tqdm(files, desc="speech", unit="file"):
        trimmed = load_speech(path)
        speech["whole"].append(variation(trimmed))
        for seconds in CROP_SECONDS:
            for _ in range(CROPS_PER_LENGTH):
                value = variation(trim_silence(crop_waveform(trimmed, seconds * 16000, rng)))
                speech[f"{seconds} s crops"].append(value)
                if np.isfinite(value) and value < worst.get(f"{seconds} s crops", (np.inf, ""))[0]:
                    worst[f"{seconds} s crops"] = (value, str(path.relative_to(data)))
    non_speech = {}
    for kind in ("white", "pink", "brown", "hum", "dither"):
        values = [
            variation(noise(kind, seconds, level, seed)) for seconds in NOISE_SECONDS for level in (0.5, 0.001) for seed in NOISE_SEEDS
        ]
        non_speech[kind] = {**refusals(values), "highest_db": float(np.max(values))}
    recorded = {path.name: variation(read_audio(path)) for path in sorted((data / "noise").glob("*.flac"))}
    result = {
        "threshold_db": MIN_SPEECH_VARIATION_DB,
        "speech": {name: refusals(values) for name, values in speech.items()},
        "lowest_crop": {name: {"db": round(v, 2), "file": f} for name, (v, f) in worst.items()},
        "non_speech": non_speech,
        "recorded_noise_db": recorded,
    }
    path = write_result("speech_check", result)
    print(
        f"speech_check: threshold {MIN_SPEECH_VARIATION_DB:g} dB; false refusals "
        + ", ".join(f"{name} {100 * r['rate']:.2f} % ({r['refused']}/{r['count']})" for name, r in result["speech"].items())
        + "; refused "
        + ", ".join(f"{kind} {r['refused']}/{r['count']} (max {r['highest_db']:.2f} dB)" for kind, r in non_speech.items())
        + f" [{path.name}]"
    )


if __name__ == "__main__":
    main()
