"""Every shipped model and the default system on every domain we can reach: is the default best off its home corpus,
and do its operating points mean the same false-accept rate elsewhere?

Domains: speechocean762 dev (the home corpus: calibration was fitted there), `../shared/data/asc` (Arabic keyword
sessions, never trained on), the repository's sample files, and channel domains made from dev (every recording,
both sides of each trial, through MP3 at 16 kHz, an 8 kHz telephone band, recorded noise at 10 dB SNR, or cut to its
middle 2 s). Per domain and system: EER, minDCF(0.01), Cllr and actual DCF(0.01) of the shipped score-to-LLR map,
and the actual false-accept and false-reject rates at the shipped `eer`, `far1` and `far0.1` thresholds.
Recordings a model refuses (no speech found) are excluded with their trials and counted. Every system is scored
twice: by cosine, and with S-norm against the domain's own recordings as an unlabelled cohort (`--scorer snorm`
after `fit-backend --scorer snorm` on the domain: no labels, the trial list's recordings themselves), with the
shipped S-norm calibration (fitted on dev) for the default system.

    python benchmarks/domains.py [--domains asc,dev-mp3]

Embeddings are cached per model fingerprint and domain under benchmarks/work/domains. Prints one line, writes
benchmarks/results/domains.json and a Markdown table to domains.md beside it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

import numpy as np
import soundfile as sf
from accuracy import channel_copy
from common import RESULTS, ROOT, require_shared_data, write_result

from deep_speaker.assembly import load_encoder
from deep_speaker.audio import read_audio
from deep_speaker.evaluation import Trials
from deep_speaker.fileio import atomic_save_npy, atomic_write_bytes
from deep_speaker.score_fusion import DEFAULT_SYSTEM, leave_one_domain_out, read_fusion
from deep_speaker.scoring.backends import SNormScorer
from deep_speaker.scoring.calibration import find_calibration
from deep_speaker.scoring.metrics import actual_dcf, cllr, compute_eer, compute_min_dcf

WORK = ROOT / "benchmarks" / "work" / "domains"
CHANNELS = {"dev-mp3": "mp3", "dev-telephone": "telephone", "dev-noise10": "noise", "dev-2s": "short"}
NOISE_SNR_DB = 10.0
SHORT_SECONDS = 2.0


def domain_copy(source: Path, channel: str, root: Path) -> Path:
    """`source` through `channel`, written once: MP3 or 8 kHz as the accuracy benchmark makes them, recorded noise
    at `NOISE_SNR_DB` (noise file and offset seeded by the file name), or the middle `SHORT_SECONDS`."""
    if channel in ("mp3", "telephone"):
        return channel_copy(source, channel, root)
    target = root / channel / source.with_suffix(".flac").name
    if target.is_file():
        return target
    audio = read_audio(source)
    if channel == "noise":
        noises = sorted((require_shared_data() / "noise").glob("*.flac"))
        rng = np.random.default_rng(list(source.stem.encode()))
        noise = read_audio(noises[rng.integers(len(noises))])
        noise = np.tile(noise, -(-audio.size // noise.size) + 1)
        start = int(rng.integers(0, noise.size - audio.size))
        noise = noise[start : start + audio.size]
        gain = np.sqrt(np.mean(audio**2) / max(np.mean(noise**2), 1e-12) / 10 ** (NOISE_SNR_DB / 10))
        audio = audio + gain * noise
        audio = audio / max(1.0, float(np.abs(audio).max()) / 0.99)
    else:
        length = int(SHORT_SECONDS * 16000)
        audio = audio[max(0, (audio.size - length) // 2) :][:length]
    target.parent.mkdir(parents=True, exist_ok=True)
    sf.write(target, audio, 16000)
    return target


def sample_trials(samples: Path, root: Path) -> Path:
    """Trials over the Deep Speaker project's sample files: the four recordings of one speaker (48 kHz) against each
    other, and against the LibriSpeech recording."""
    philippe = sorted((samples / "PhilippeRemy").glob("*.wav"))
    other = samples / "1255-90413-0001.flac"
    lines = [f"1 {a.relative_to(samples)} {b.relative_to(samples)}" for i, a in enumerate(philippe) for b in philippe[i + 1 :]]
    lines += [f"0 {a.relative_to(samples)} {other.name}" for a in philippe]
    path = root / "samples_trials.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def domains() -> dict[str, tuple[Path, Path, str | None]]:
    """name -> (audio root, trial list, channel applied to every recording or None)."""
    data = require_shared_data()
    dev, dev_trials = data / "speechocean762" / "dev", data / "speechocean762" / "dev_trials.txt"
    found = {
        "dev": (dev, dev_trials, None),
        "asc": (data / "asc", data / "asc" / "trials.txt", None),
        "samples": (data / "samples", sample_trials(data / "samples", WORK), None),
    }
    found.update({name: (dev, dev_trials, channel) for name, channel in CHANNELS.items()})
    return found


def member_embeddings(encoder, domain: str, paths: list[Path]) -> np.ndarray:
    """Embeddings of `paths` by one model, NaN rows for recordings it refuses; cached by fingerprint and domain."""
    files = hashlib.sha256("\n".join(map(str, paths)).encode()).hexdigest()[:8]
    cache = WORK / "embeddings" / f"{encoder.fingerprint}_{domain}_{files}.npy"
    if cache.is_file():
        return np.load(cache)
    vectors = encoder.embed_many(paths, progress=True, refused={})
    atomic_save_npy(cache, vectors)
    return vectors


def trial_scores(matrix: np.ndarray, enroll: np.ndarray, test: np.ndarray, snorm: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Scores of the trials whose recordings both have embeddings (rows not NaN), and which trials those are: cosine,
    or (`snorm`) S-norm against all the domain's usable recordings as its unlabelled cohort."""
    usable = np.all(np.isfinite(matrix), axis=1)
    kept = usable[enroll] & usable[test]
    unit = np.where(usable[:, None], matrix, 0.0)
    unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    if snorm:
        scores = SNormScorer().fit(unit[usable]).score_matrix(unit, unit)
        return scores[enroll[kept], test[kept]], kept
    return np.sum(unit[enroll[kept]] * unit[test[kept]], axis=1), kept


def weight_study(member_scores: dict, spreads: dict, weights=np.round(np.arange(0.1, 0.95, 0.1), 2)) -> dict:
    """The z-normalised fusion with GE2E's share w of the weight (the default: 0.5) per domain, and the weights `fuse
    --fit-weights` would choose, checked leave one domain out (`score_fusion.leave_one_domain_out`; the samples aside:
    10 trials)."""
    ge2e, ours = "ge2e_resemblyzer", "deep_speaker"
    table = {}
    for domain, (scores, labels) in member_scores.items():
        best = min(compute_eer(scores[m][labels == 1], scores[m][labels == 0])[0] for m in scores)
        row = {}
        for w in weights:
            fused = w * scores[ge2e] / spreads[ge2e] + (1 - w) * scores[ours] / spreads[ours]
            row[float(w)] = compute_eer(fused[labels == 1], fused[labels == 0])[0]
        table[domain] = {"best_member_eer": best, "eer_by_ge2e_share": row}
    z_scores = {
        domain: (np.stack([scores[ge2e] / spreads[ge2e], scores[ours] / spreads[ours]], axis=1), labels)
        for domain, (scores, labels) in member_scores.items()
        if domain != "samples"
    }
    return {"members": [ge2e, ours], "by_domain": table, "leave_one_domain_out": leave_one_domain_out(z_scores)}


COHORT_PER_SPEAKER = 4  # training recordings per speaker in the AS-norm cohort
TOP_COHORT = 50
CALIBRATIONS = {  # inputs of a logistic-regression score-to-LLR map
    "score (shipped form)": ("fused",),
    "score + typicality": ("fused", "typical_ge2e", "typical_ours"),
    "AS-norm score": ("asnorm",),
    "AS-norm score + typicality": ("asnorm", "typical_ge2e", "typical_ours"),
    "score + typicality + disagreement": ("fused", "typical_ge2e", "typical_ours", "disagreement"),
    "S-norm score, in-domain unlabelled cohort": ("snorm",),
}


def cohort_embeddings(members: dict) -> dict:
    """Unit embeddings, per member, of `COHORT_PER_SPEAKER` recordings of every training speaker."""
    from deep_speaker.data.corpus import discover_utterances

    by_speaker: dict[str, list] = {}
    for utterance in discover_utterances(require_shared_data() / "speechocean762" / "train"):
        by_speaker.setdefault(utterance.speaker, []).append(utterance.path)
    paths = [path for speaker in sorted(by_speaker) for path in by_speaker[speaker][:COHORT_PER_SPEAKER]]
    cohort = {name: member_embeddings(encoder, "cohort", paths) for name, encoder in members.items()}
    return {name: vectors / np.linalg.norm(vectors, axis=1, keepdims=True) for name, vectors in cohort.items()}


def trial_features(vectors: dict, enroll, test, cohort: dict, spreads: dict) -> dict:
    """Per trial: the fused score, its AS-norm (top-50 cohort, each member's), how typical the two recordings are of
    the training speakers for each member (mean top-cohort similarity), and the members' z-score disagreement."""
    shares = np.array([1 / spreads[name] for name in cohort])
    shares = shares / shares.sum()
    features, z_scores = {"fused": 0.0, "asnorm": 0.0}, []
    for share, (name, reference) in zip(shares, cohort.items()):
        unit = vectors[name] / np.linalg.norm(vectors[name], axis=1, keepdims=True)
        score = np.sum(unit[enroll] * unit[test], axis=1)
        top = np.sort(unit @ reference.T, axis=1)[:, -TOP_COHORT:]
        mean, spread = top.mean(axis=1), top.std(axis=1)
        features["fused"] = features["fused"] + share * score
        features["asnorm"] = features["asnorm"] + share * 0.5 * (
            (score - mean[enroll]) / spread[enroll] + (score - mean[test]) / spread[test]
        )
        features[f"typical_{'ge2e' if 'ge2e' in name else 'ours'}"] = (mean[enroll] + mean[test]) / 2
        z_scores.append(score / spreads[name])
    features["disagreement"] = np.ptp(np.stack(z_scores), axis=0)
    return features


def _far1_threshold(llrs: list[np.ndarray]) -> float:
    """The LLR threshold at which the fitting domains' false-accept rates average 1 % (each domain counts once)."""
    candidates = np.unique(np.concatenate(llrs))
    far = np.mean([1 - np.searchsorted(np.sort(values), candidates, side="left") / values.size for values in llrs], axis=0)
    return float(candidates[np.argmax(far <= 0.01)])


def calibration_study(features: dict) -> dict:
    """Leave one domain out: each `CALIBRATIONS` map fitted by logistic regression on the other domains (each domain and
    class weighted equally), its `far1` threshold set where their false-accept rates average 1 %, then the false-accept
    and false-reject rates that threshold gives on the held-out domain."""
    from sklearn.linear_model import LogisticRegression

    study = {}
    for name, inputs in CALIBRATIONS.items():
        study[name] = {}
        for held in features:
            fitting = [d for d in features if d != held]
            matrix = np.concatenate([np.stack([features[d][i] for i in inputs], axis=1) for d in fitting])
            labels = np.concatenate([features[d]["labels"] for d in fitting])
            weights = np.concatenate(
                [
                    np.where(features[d]["labels"] == 1, 1 / np.sum(features[d]["labels"] == 1), 1 / np.sum(features[d]["labels"] == 0))
                    for d in fitting
                ]
            )
            model = LogisticRegression(C=1e4).fit(matrix, labels, sample_weight=weights * len(labels) / weights.sum())
            threshold = _far1_threshold(
                [model.decision_function(np.stack([features[d][i] for i in inputs], axis=1))[features[d]["labels"] == 0] for d in fitting]
            )
            llr = model.decision_function(np.stack([features[held][i] for i in inputs], axis=1))
            truth = features[held]["labels"]
            study[name][held] = {"far": float(np.mean(llr[truth == 0] >= threshold)), "frr": float(np.mean(llr[truth == 1] < threshold))}
    return study


def rates(target: np.ndarray, nontarget: np.ndarray, threshold: float) -> dict:
    return {"threshold": threshold, "far": float(np.mean(nontarget >= threshold)), "frr": float(np.mean(target < threshold))}


def evaluate(scores: np.ndarray, labels: np.ndarray, calibration) -> dict:
    """Discrimination and, with the shipped calibration, what its LLRs and thresholds deliver here."""
    target, nontarget = scores[labels == 1], scores[labels == 0]
    result = {"target_trials": int(target.size), "nontarget_trials": int(nontarget.size)}
    result["eer"], _ = compute_eer(target, nontarget)
    result["min_dcf_0.01"], _ = compute_min_dcf(target, nontarget, 0.01)
    if calibration is not None:
        llr = lambda s: calibration.llr_scale * s + calibration.llr_offset  # noqa: E731
        result["cllr"] = cllr(llr(target), llr(nontarget))
        result["act_dcf_0.01"] = actual_dcf(llr(target), llr(nontarget), 0.01)
        result["operating_points"] = {point: rates(target, nontarget, calibration.threshold(point)) for point in ("eer", "far1", "far0.1")}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domains", help="comma-separated subset of the domains (default: all)")
    args = parser.parse_args()
    system = load_encoder()
    members = {Path(m.checkpoint).stem: m for m in system.members}
    chosen = domains()
    if args.domains:
        chosen = {name: chosen[name] for name in args.domains.split(",")}
    results, member_scores, features = {}, {}, {}
    cohort = cohort_embeddings(members)
    spreads = {Path(m.checkpoint).stem: m.impostor_std for m in read_fusion(DEFAULT_SYSTEM)}
    for domain, (root, trials_path, channel) in chosen.items():
        trials = Trials.read(trials_path)
        files = trials.files()
        paths = [root / f if channel is None else domain_copy(root / f, channel, WORK / "audio") for f in files]
        vectors = {name: member_embeddings(encoder, domain, paths) for name, encoder in members.items()}
        vectors["default system"] = system.join([vectors[name] for name in members])
        index = {f: k for k, f in enumerate(files)}
        enroll, test = np.array([index[f] for f in trials.enroll]), np.array([index[f] for f in trials.test])
        results[domain] = {}
        for name, matrix in vectors.items():
            encoder = system if name == "default system" else members[name]
            for scorer in ("cosine", "snorm") if len(files) >= SNormScorer.MIN_COHORT else ("cosine",):  # the samples: 5 recordings
                scores, kept = trial_scores(matrix, enroll, test, snorm=scorer == "snorm")
                if (name, scorer) == ("default system", "snorm"):
                    default_snorm = scores  # the calibration study's `snorm` input (same trials: the default's usable ones)
                results[domain][name if scorer == "cosine" else f"{name} + S-norm"] = {
                    **evaluate(scores, trials.labels[kept], find_calibration(encoder.fingerprint, scorer=scorer)),
                    "refused_recordings": int(np.sum(~np.all(np.isfinite(matrix), axis=1))),
                    "refused_trials": int(np.sum(~kept)),
                }
        both = np.all(np.isfinite(vectors["default system"]), axis=1)
        member_scores[domain] = (
            {name: trial_scores(np.where(both[:, None], vectors[name], np.nan), enroll, test)[0] for name in members},
            trials.labels[both[enroll] & both[test]],
        )
        if domain != "samples":  # 10 trials: nothing to fit or judge a calibration on
            kept = both[enroll] & both[test]
            features[domain] = {
                **trial_features(vectors, enroll[kept], test[kept], cohort, spreads),
                "snorm": default_snorm,
                "labels": trials.labels[kept],
            }
    trial_lists = {d: os.path.relpath(chosen[d][1], ROOT) + (f" through {chosen[d][2]}" if chosen[d][2] else "") for d in chosen}
    study = weight_study(member_scores, spreads)
    calibrations = calibration_study(features)
    path = write_result(
        "domains", {"domains": trial_lists, "results": results, "fusion_weight_study": study, "calibration_study_far1": calibrations}
    )
    atomic_write_bytes(RESULTS / "domains.md", markdown(results).encode() + calibration_markdown(calibrations).encode())
    default = {d: results[d]["default system"] for d in results}
    adapted = {d: results[d].get("default system + S-norm") for d in results}
    best = {d: min(results[d][m]["eer"] for m in members) for d in results}
    print(
        "domains: default system EER "
        + ", ".join(
            f"{d} {100 * default[d]['eer']:.2f} % (+ S-norm {100 * adapted[d]['eer']:.2f} %; best member {100 * best[d]:.2f} %)"
            for d in results
            if adapted[d]
        )
        + "; false accepts at far1, cosine / S-norm: "
        + ", ".join(
            f"{d} {100 * default[d]['operating_points']['far1']['far']:.1f} / {100 * adapted[d]['operating_points']['far1']['far']:.1f} %"
            for d in results
            if adapted[d]
        )
        + "; fusion weights fitted leave-one-domain-out (GE2E's share, held-out EER, equal weights): "
        + ", ".join(
            f"{d} {c['weights'][0]:.2f} ({100 * c['eer']:.2f} %, {100 * c['equal_weights_eer']:.2f} %)"
            for d, c in study["leave_one_domain_out"].items()
        )
        + f" [{path.name}]"
    )


def calibration_markdown(study: dict) -> str:
    domains_ = list(next(iter(study.values())))
    lines = [
        "",
        "Leave one domain out: FAR / FRR at the `far1` threshold of a calibration fitted on the other domains",
        "",
        "| calibration | " + " | ".join(domains_) + " |",
        "|---|" + "---|" * len(domains_),
    ]
    for name, by_domain in study.items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * r['far']:.1f} / {100 * r['frr']:.1f} %" for r in by_domain.values()) + " |")
    return "\n".join(lines) + "\n"


def markdown(results: dict) -> str:
    lines = [
        "| domain | system | trials (target / non-target; refused) | EER | minDCF(0.01) | Cllr | actDCF(0.01) | FAR / FRR at eer | at far1 | at far0.1 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for domain, systems in results.items():
        for name, r in systems.items():
            points = r.get("operating_points", {})
            cells = [
                f"{100 * points[p]['far']:.1f} / {100 * points[p]['frr']:.1f} %" if p in points else "-" for p in ("eer", "far1", "far0.1")
            ]
            refused = f"; {r['refused_trials']}" if r["refused_trials"] else ""
            lines.append(
                f"| {domain} | {name} | {r['target_trials']} / {r['nontarget_trials']}{refused} | {100 * r['eer']:.2f} % | {r['min_dcf_0.01']:.3f} | "
                f"{r.get('cllr', float('nan')):.3f} | {r.get('act_dcf_0.01', float('nan')):.3f} | {' | '.join(cells)} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
