"""Attacks and spoofs against the shipped verifier on dev speakers: success rate against SNR, per attack.

Pairs: `--pairs` impostor pairs of dev recordings of different speakers (deterministic), the threshold the
verifier uses (`far1` of the model's calibration). Targeted: the impostor's recording attacked to be accepted as the
target's speaker (score against the target recording's embedding). Untargeted: a genuine pair's recording attacked
to be rejected. PGD at 20, 30, 40, 50 dB SNR; FGSM, BIM and NES at 30 dB; AdvGAN (`--advgan`, a generator from
`train-advgan`) at its SNR; WORLD voice conversion of the impostor's recording toward the target. Success is judged on
the attacked audio written at 16 bits and embedded again. With `--detector` (a `train-detector` model) every attacked
recording also meets the spoof gate: a targeted attack succeeds past it only if accepted *and* not flagged (an
untargeted one wants a rejection, which a flag gives too: only the share flagged is reported). With `--robust`
(an `adversarial-finetune` model) targeted PGD at 30 dB is run against it and against the model it was fine-tuned
from (`--robust_base`), each at its own far1 threshold on the dev trials, with both clean dev EERs.
Plot: success rate against SNR. Prints one line, writes benchmarks/results/adversarial.json.

    python benchmarks/adversarial.py [--pairs 10] [--steps 30] [--nes_pairs 3] [--nes_steps 20] [--plot docs/adversarial.png]
        [--advgan G.keras] [--detector D.keras] [--robust R.keras [--robust_base B.keras]]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from common import RESULTS, ROOT, dev_impostor_pairs, require_shared_data, write_result
from voice_conversion import convert_pairs

SNRS = (20, 30, 40, 50)


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint_file", help="default: the shipped default system")
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--nes_pairs", type=int, default=3, help="NES is query-hungry: fewer pairs")
    parser.add_argument("--nes_steps", type=int, default=20, help="NES iterations (51 queries each)")
    parser.add_argument("--plot", default=str(ROOT / "docs" / "adversarial.png"))
    parser.add_argument("--advgan", help="an AdvGAN generator (train-advgan) to compare with PGD")
    parser.add_argument("--detector", help="a spoof detector (train-detector) as the verifier's gate")
    parser.add_argument("--robust", help="an adversarially fine-tuned model (adversarial-finetune)")
    parser.add_argument(
        "--robust_base",
        default=str(ROOT / "deep_speaker" / "pretrained" / "deep_speaker.keras"),
        help="the model --robust was fine-tuned from",
    )
    parser.add_argument("--replot", action="store_true", help="only redraw the plot from benchmarks/results/adversarial.json")
    return parser.parse_args()


def summary_line(results: dict, robust: dict | None, advgan: bool, gated: bool) -> str:
    """The benchmark's one summary line."""
    pgd = results["pgd_targeted"]
    return (
        "adversarial: targeted PGD success "
        + ", ".join(f"{snr} dB {100 * pgd[snr]['success_rate']:.0f} %" for snr in SNRS)
        + f"; untargeted PGD at 30 dB {100 * results['pgd_untargeted'][30]['success_rate']:.0f} %; at 30 dB FGSM {100 * results['fgsm_targeted'][30]['success_rate']:.0f} %, "
        f"BIM {100 * results['bim_targeted'][30]['success_rate']:.0f} %, NES {100 * results['nes_targeted'][30]['success_rate']:.0f} % "
        f"({results['nes_targeted'][30]['queries_per_example']:.0f} queries); WORLD conversion accepted {100 * results['world_conversion']['acceptance_rate']:.0f} %; "
        f"PGD {pgd[30]['seconds_per_example']:.1f} s per example"
        + (
            f"; AdvGAN {100 * next(iter(results['advgan_targeted'].values()))['success_rate']:.0f} % in {next(iter(results['advgan_targeted'].values()))['seconds_per_example']:.2f} s"
            if advgan
            else ""
        )
        + (
            f"; past the gate: PGD 30 dB {100 * pgd[30]['success_rate_with_gate']:.0f} %, WORLD {100 * results['world_conversion']['acceptance_rate_with_gate']:.0f} %"
            if gated
            else ""
        )
        + (
            f"; adversarial training: PGD 30 dB {100 * robust['base']['pgd_targeted_30db']:.0f} % -> {100 * robust['robust']['pgd_targeted_30db']:.0f} %, "
            f"clean dev EER {100 * robust['base']['dev_eer']:.2f} % -> {100 * robust['robust']['dev_eer']:.2f} %"
            if robust is not None
            else ""
        )
    )


def gate_and_generator(args) -> tuple:
    """The spoof detector (--detector) and the AdvGAN generator (--advgan), each None when not given."""
    gate = generator = None
    if args.detector:
        from deep_speaker.adversarial.detector import SpoofDetector

        gate = SpoofDetector(args.detector)
    if args.advgan:
        from deep_speaker.models.advgan import load_generator

        generator = load_generator(args.advgan)
    return gate, generator


def main() -> None:
    from deep_speaker.adversarial import AttackConfig
    from deep_speaker.adversarial.conversion import world_convert
    from deep_speaker.assembly import attack, load_encoder
    from deep_speaker.verification import Verifier

    args = parse_arguments()
    if args.replot:
        return plot(json.loads((RESULTS / "adversarial.json").read_text()), args.plot)
    dev = require_shared_data() / "speechocean762" / "dev"
    pairs = dev_impostor_pairs(args.pairs)
    encoder = load_encoder(args.checkpoint_file)
    verifier = Verifier(encoder)
    threshold, _ = verifier.threshold()
    gate, generator = gate_and_generator(args)

    def run(method, snr, targeted, pair_list, model=encoder, limit=threshold, **options):
        outcomes = []
        for impostor, same, target in pair_list:
            reference = model.embed(target if targeted else same)
            started = time.perf_counter()
            config = AttackConfig(**{"method": method, "snr_db": snr, "steps": args.steps, **options})
            clean, result = attack(model, impostor, reference, limit, targeted, config, generator)
            outcome = {
                "success": result.success,
                "snr_db": result.snr_db(clean),
                "seconds": time.perf_counter() - started,
                "queries": result.queries,
                "score_before": result.score_before,
                "score_after": result.score_after,
            }
            if gate is not None:
                outcome["flagged"] = gate(result.waveform) is not None
            outcomes.append(outcome)
        return {
            "success_rate": float(np.mean([o["success"] for o in outcomes])),
            **(gated(outcomes, targeted) if gate is not None else {}),
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
    if generator is not None:
        from deep_speaker.models.advgan import snr_of

        results["advgan_targeted"] = {round(snr_of(generator)): run("advgan", snr_of(generator), True, pairs)}
    results["world_conversion"] = convert_pairs(world_convert, pairs, verifier, gate)  # both converters: benchmarks/voice_conversion.py
    robust = robustness(args, pairs, run, dev) if args.robust else None

    summary = {
        name: {str(snr): {k: v for k, v in entry.items() if k != "examples"} for snr, entry in levels.items()}
        for name, levels in results.items()
        if name != "world_conversion"
    }
    path = write_result(
        "adversarial",
        {
            "command": "python benchmarks/adversarial.py " + " ".join(sys.argv[1:]),
            "model": encoder.fingerprint,
            "threshold": threshold,
            "pairs": [[str(p.relative_to(dev)) for p in pair] for pair in pairs],
            "summary": summary,
            "world_conversion_acceptance_rate": results["world_conversion"]["acceptance_rate"],
            "details": {k: {str(s): e for s, e in v.items()} if k != "world_conversion" else v for k, v in results.items()},
            "detector": args.detector,
            "advgan": args.advgan,
            "adversarial_training": robust,
        },
    )
    plot(json.loads(path.read_text()), args.plot)
    print(summary_line(results, robust, generator is not None, gate is not None) + f" -> {path}")


def plot(report: dict, path) -> None:
    """Success rate against SNR from a results file (`--replot` redraws the last one)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary, robust = report["summary"], report.get("adversarial_training")
    figure, axis = plt.subplots(figsize=(8.5, 3.6))
    for name, label in (("pgd_targeted", "PGD targeted (impostor accepted)"), ("pgd_untargeted", "PGD untargeted (genuine rejected)")):
        axis.plot(SNRS, [100 * summary[name][str(snr)]["success_rate"] for snr in SNRS], marker="o", label=label)
    for name, marker in (("fgsm_targeted", "s"), ("bim_targeted", "^"), ("nes_targeted", "D"), ("advgan_targeted", "v")):
        for snr, entry in summary.get(name, {}).items():
            axis.scatter([float(snr)], [100 * entry["success_rate"]], marker=marker, label=name.replace("_", " "), zorder=3)
    if "success_rate_with_gate" in summary["pgd_targeted"]["30"]:
        axis.plot(
            SNRS,
            [100 * summary["pgd_targeted"][str(snr)]["success_rate_with_gate"] for snr in SNRS],
            marker="o",
            linestyle="--",
            label="PGD targeted, past the spoof gate",
        )
    if robust:
        axis.scatter(
            [30], [100 * robust["base"]["pgd_targeted_30db"]], marker="P", s=50, label="PGD targeted vs ECAPA-TDNN alone", zorder=3
        )
        axis.scatter(
            [30],
            [100 * robust["robust"]["pgd_targeted_30db"]],
            marker="*",
            s=90,
            label="PGD targeted vs ECAPA-TDNN, adversarially fine-tuned",
            zorder=3,
        )
    axis.axhline(100 * report["world_conversion_acceptance_rate"], color="grey", linestyle=":", label="WORLD conversion accepted")
    axis.set_xlabel("signal-to-perturbation ratio (dB)")
    axis.set_ylabel("success rate (%)")
    axis.set_ylim(-5, 105)
    axis.set_title(f"Attacks on the shipped verifier ({len(report['pairs'])} dev pairs, threshold far1)")
    axis.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)


def gated(outcomes: list[dict], targeted: bool) -> dict:
    """What the spoof gate changes: the share of attacked recordings it flags, and for targeted attacks the share
    still accepted (accepted by the verifier and not flagged); an untargeted attack wants a rejection, which a flag
    also gives, so the gate cannot stop it."""
    report = {"flagged_rate": float(np.mean([o["flagged"] for o in outcomes]))}
    if targeted:
        report["success_rate_with_gate"] = float(np.mean([o["success"] and not o["flagged"] for o in outcomes]))
    return report


def robustness(args, pairs, run, dev) -> dict:
    """Targeted PGD at 30 dB against the fine-tuned model and its base, each at the far1 threshold of its own scores
    on the dev trials (as `calibrate` would set it), and both clean dev EERs."""
    from deep_speaker.assembly import load_encoder
    from deep_speaker.evaluation import evaluate_trials
    from deep_speaker.scoring.calibration import Calibration

    report = {}
    for name, path in (("base", args.robust_base), ("robust", args.robust)):
        model = load_encoder(path)
        result = evaluate_trials(model, dev.parent / "dev_trials.txt", dev, progress=False)
        far1 = Calibration.from_scores(result.target_scores, result.nontarget_scores).far1
        attacked = run("pgd", 30, True, pairs, model=model, limit=far1)
        report[name] = {
            "model": str(path),
            "dev_eer": result.eer,
            "threshold_far1": far1,
            "pgd_targeted_30db": attacked["success_rate"],
            "mean_snr_db": attacked["mean_snr_db"],
            "examples": attacked["examples"],
        }
    return report


if __name__ == "__main__":
    main()
