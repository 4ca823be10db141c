"""Classical floor: 30 MFCC, per-utterance mean + std, LDA trained on the train speakers, cosine scoring.

python benchmarks/baseline.py     # prints one line, writes benchmarks/results/baseline.json
"""

from __future__ import annotations

import numpy as np
from common import require_shared_data, write_result
from python_speech_features import mfcc

from deep_speaker.audio import read_audio
from deep_speaker.data.corpus import discover_utterances
from deep_speaker.evaluation import Trials, score_trials, verification_result


def mfcc_statistics(path) -> np.ndarray:
    """Mean and standard deviation over time of 30 MFCCs (40 mel bands, 25 ms / 10 ms)."""
    coefficients = mfcc(read_audio(path), 16000, numcep=30, nfilt=40, nfft=512)
    return np.concatenate([coefficients.mean(axis=0), coefficients.std(axis=0)])


def classical_baseline(train_dir, dev_dir, trials_path) -> dict:
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    train = discover_utterances(train_dir)
    train_vectors = np.stack([mfcc_statistics(u.path) for u in train])
    trials = Trials.read(trials_path)
    files = trials.files()
    dev_vectors = np.stack([mfcc_statistics(dev_dir / f) for f in files])
    mean, std = train_vectors.mean(axis=0), train_vectors.std(axis=0) + 1e-8
    results = {}
    raw = verification_result(score_trials(dict(zip(files, (dev_vectors - mean) / std)), trials), trials.labels)
    results["mfcc_mean_std_cosine"] = raw.summary()
    lda = LinearDiscriminantAnalysis().fit((train_vectors - mean) / std, [u.speaker for u in train])
    projected = lda.transform((dev_vectors - mean) / std)
    results["mfcc_mean_std_lda_cosine"] = verification_result(score_trials(dict(zip(files, projected)), trials), trials.labels).summary()
    return results


def main() -> None:
    corpus = require_shared_data() / "speechocean762"
    results = classical_baseline(corpus / "train", corpus / "dev", corpus / "dev_trials.txt")
    path = write_result("baseline", results)
    raw, lda = results["mfcc_mean_std_cosine"], results["mfcc_mean_std_lda_cosine"]
    print(
        f"baseline: MFCC mean+std cosine EER {100 * raw['eer']:.2f} % minDCF(0.01) {raw['min_dcf_p0.01']:.3f}; "
        f"+ LDA EER {100 * lda['eer']:.2f} % minDCF(0.01) {lda['min_dcf_p0.01']:.3f} [{path.name}]"
    )


if __name__ == "__main__":
    main()
