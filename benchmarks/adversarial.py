"""Attacks and spoofs against the shipped verifier on dev speakers: success rate against SNR, per attack.

Pairs: `--pairs` impostor pairs of dev recordings of different speakers (deterministic), the threshold the
verifier uses (`far1` of the model's calibration). Targeted: the impostor's recording attacked to be accepted as the
target's speaker (score against the target recording's embedding). Untargeted: a genuine pair's recording attacked
to be rejected. PGD at 20, 30, 40, 50 dB SNR; FGSM, BIM and NES at 30 dB; WORLD voice conversion of the impostor's
recording toward the target. Success is judged on the attacked audio written at 16 bits and embedded again.
Plot: success rate against SNR. Prints one line, writes benchmarks/results/adversarial.json.

    python benchmarks/adversarial.py [--pairs 10] [--steps 30] [--nes_pairs 3] [--nes_steps 20] [--plot docs/adversarial.png]
"""

import argparse
import time
from pathlib import Path

import numpy as np

from common import ROOT, require_shared_data, write_result

SNRS = (20, 30, 40, 50)


def main() -> None:
    from deep_speaker.adversarial import AttackConfig, as_written, attack_recording
    from deep_speaker.adversarial.conversion import world_convert
    from deep_speaker.audio import read_audio
    from deep_speaker.score_fusion import load_encoder
    from deep_speaker.verification import Verifier

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint_file", help="default: the shipped default system")
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--nes_pairs", type=int, default=3, help="NES is query-hungry: fewer pairs")
    parser.add_argument("--nes_steps", type=int, default=20, help="NES iterations (51 queries each)")
    parser.add_argument("--plot", default=str(ROOT / "docs" / "adversarial.png"))
    args = parser.parse_args()
    dev = require_shared_data() / "speechocean762" / "dev"
    speakers = sorted(p for p in dev.iterdir() if p.is_dir())
    rng = np.random.default_rng(7)
    pairs = []
    for index in rng.choice(len(speakers), size=args.pairs, replace=False):
        impostor, target = speakers[index], speakers[(index + 1 + rng.integers(len(speakers) - 1)) % len(speakers)]
        impostor_files, target_files = sorted(impostor.glob("*.flac")), sorted(target.glob("*.flac"))
        pairs.append((impostor_files[0], impostor_files[1], target_files[0]))
    encoder = load_encoder(args.checkpoint_file)
    verifier = Verifier(encoder)
    threshold, _ = verifier.threshold()

    def run(method, snr, targeted, pair_list, **options):
        outcomes = []
        for impostor, same, target in pair_list:
            reference = encoder.embed(target if targeted else same)
            started = time.perf_counter()
            clean, result = attack_recording(encoder, impostor, reference, threshold, targeted, AttackConfig(**{"method": method, "snr_db": snr, "steps": args.steps, **options}))
            outcomes.append({"success": result.success, "snr_db": result.snr_db(clean), "seconds": time.perf_counter() - started, "queries": result.queries, "score_before": result.score_before, "score_after": result.score_after})
        return {
            "success_rate": float(np.mean([o["success"] for o in outcomes])),
            "mean_snr_db": float(np.mean([o["snr_db"] for o in outcomes])),
            "seconds_per_example": float(np.mean([o["seconds"] for o in outcomes])),
            "queries_per_example": float(np.mean([o["queries"] for o in outcomes])),
            "examples": outcomes,
        }

    results = {"pgd_targeted": {snr: run("pgd", snr, True, pairs) for snr in SNRS}}
    results["pgd_untargeted"] = {snr: run("pgd", snr, False, pairs) for snr in SNRS}
    for method in ("fgsm", "bim"):
        results[f"{method}_targeted"] = {30: run(method, 30, True, pairs)}
    results["nes_targeted"] = {30: run("nes", 30, True, pairs[: args.nes_pairs], steps=args.nes_steps, nes_samples=25)}
    converted = []
    for impostor, _, target in pairs:
        started = time.perf_counter()
        spoof = as_written(world_convert(read_audio(impostor), read_audio(target)))
        decision = verifier.verify(spoof, target)
        converted.append({"accepted": bool(decision.accepted), "score": decision.score, "seconds": time.perf_counter() - started,
                          "score_before": verifier.verify(impostor, target).score})
    results["world_conversion"] = {"acceptance_rate": float(np.mean([c["accepted"] for c in converted])), "examples": converted}

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.6))
    for name, label in (("pgd_targeted", "PGD targeted (impostor accepted)"), ("pgd_untargeted", "PGD untargeted (genuine rejected)")):
        axis.plot(SNRS, [100 * results[name][snr]["success_rate"] for snr in SNRS], marker="o", label=label)
    for name, marker in (("fgsm_targeted", "s"), ("bim_targeted", "^"), ("nes_targeted", "D")):
        axis.scatter([30], [100 * results[name][30]["success_rate"]], marker=marker, label=name.replace("_", " "), zorder=3)
    axis.axhline(100 * results["world_conversion"]["acceptance_rate"], color="grey", linestyle=":", label="WORLD conversion accepted")
    axis.set_xlabel("signal-to-perturbation ratio (dB)")
    axis.set_ylabel("success rate (%)")
    axis.set_ylim(-5, 105)
    axis.set_title(f"Attacks on the shipped verifier ({len(pairs)} dev pairs, threshold far1)")
    axis.legend(fontsize=7, loc="center left")
    figure.tight_layout()
    Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.plot, dpi=120)

    summary = {name: {str(snr): {k: v for k, v in entry.items() if k != "examples"} for snr, entry in levels.items()} for name, levels in results.items() if name != "world_conversion"}
    path = write_result("adversarial", {
        "command": f"python benchmarks/adversarial.py --pairs {args.pairs} --steps {args.steps} --nes_pairs {args.nes_pairs} --nes_steps {args.nes_steps}",
        "model": encoder.fingerprint, "threshold": threshold, "pairs": [[str(p.relative_to(dev)) for p in pair] for pair in pairs],
        "summary": summary, "world_conversion_acceptance_rate": results["world_conversion"]["acceptance_rate"], "details": {k: {str(s): e for s, e in v.items()} if k != "world_conversion" else v for k, v in results.items()},
    })
    pgd = results["pgd_targeted"]
    print(
        "adversarial: targeted PGD success " + ", ".join(f"{snr} dB {100 * pgd[snr]['success_rate']:.0f} %" for snr in SNRS)
        + f"; untargeted PGD at 30 dB {100 * results['pgd_untargeted'][30]['success_rate']:.0f} %; at 30 dB FGSM {100 * results['fgsm_targeted'][30]['success_rate']:.0f} %, "
        f"BIM {100 * results['bim_targeted'][30]['success_rate']:.0f} %, NES {100 * results['nes_targeted'][30]['success_rate']:.0f} % "
        f"({results['nes_targeted'][30]['queries_per_example']:.0f} queries); WORLD conversion accepted {100 * results['world_conversion']['acceptance_rate']:.0f} %; "
        f"PGD {pgd[30]['seconds_per_example']:.1f} s per example -> {path}"
    )


if __name__ == "__main__":
    main()
