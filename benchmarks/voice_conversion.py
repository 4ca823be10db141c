"""Voice-conversion spoofs against the shipped verifier: how often converted speech is accepted as the target.

Each dev impostor pair (the impostor's recording, a recording of another dev speaker as the target's voice) is
converted by WORLD (statistics mapping) and, with `--converter`, by AGAIN-VC (a `train-again` model, Griffin-Lim
vocoded); the result, written at 16 bits, is verified against the target recording at the verifier's `far1`
threshold. Reported per method: acceptance rate, mean score before (the impostor's own recording) and after, seconds
per conversion, and with `--detector` the share the spoof gate flags and the acceptance past it. Prints one line,
writes benchmarks/results/voice_conversion.json.

    python benchmarks/voice_conversion.py [--pairs 30] [--converter C.keras] [--detector D.keras]
"""

import argparse
import sys
import time

import numpy as np
from common import dev_impostor_pairs, require_shared_data, write_result


def convert_pairs(convert, pairs, verifier, gate=None) -> dict:
    """Convert each impostor recording toward its target with `convert(source, target)` (waveforms) and verify it."""
    from deep_speaker.adversarial import as_written
    from deep_speaker.audio import read_audio
    from deep_speaker.errors import NoSpeechError

    examples = []
    for impostor, _, target in pairs:
        started = time.perf_counter()
        spoof = as_written(convert(read_audio(impostor), read_audio(target)))
        seconds = time.perf_counter() - started
        try:
            decision = verifier.verify(spoof, target)
            accepted, score = bool(decision.accepted), decision.score
        except NoSpeechError:  # the verifier finds no speech in it: rejected, as a user of the verifier would see
            accepted, score = False, None
        examples.append(
            {
                "impostor": impostor.name,
                "target": target.name,
                "accepted": accepted,
                "score": score,
                "score_before": verifier.verify(impostor, target).score,
                "seconds": seconds,
                **({"flagged": gate(spoof) is not None} if gate is not None else {}),
            }
        )
    report = {
        "acceptance_rate": float(np.mean([e["accepted"] for e in examples])),
        "mean_score_before": float(np.mean([e["score_before"] for e in examples])),
        "mean_score": float(np.mean([e["score"] for e in examples if e["score"] is not None] or [np.nan])),
        "no_speech_rate": float(np.mean([e["score"] is None for e in examples])),
        "seconds_per_conversion": float(np.mean([e["seconds"] for e in examples])),
    }
    if gate is not None:
        report["flagged_rate"] = float(np.mean([e["flagged"] for e in examples]))
        report["acceptance_rate_with_gate"] = float(np.mean([e["accepted"] and not e["flagged"] for e in examples]))
    return {**report, "examples": examples}


def main() -> None:
    from deep_speaker.adversarial.conversion import again_convert, world_convert
    from deep_speaker.assembly import load_encoder
    from deep_speaker.verification import Verifier

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint_file", help="default: the shipped default system")
    parser.add_argument("--pairs", type=int, default=30)
    parser.add_argument("--converter", help="an AGAIN-VC converter (train-again)")
    parser.add_argument("--detector", help="a spoof detector (train-detector) as the verifier's gate")
    args = parser.parse_args()
    require_shared_data()
    verifier = Verifier(load_encoder(args.checkpoint_file))
    threshold, _ = verifier.threshold()
    gate = None
    if args.detector:
        from deep_speaker.adversarial.detector import SpoofDetector

        gate = SpoofDetector(args.detector)
    pairs = dev_impostor_pairs(args.pairs)
    methods = {"world": world_convert}
    if args.converter:
        from deep_speaker.models.again_vc import load_converter

        converter = load_converter(args.converter)
        methods["again"] = lambda source, target: again_convert(converter, source, target)
    results = {name: convert_pairs(convert, pairs, verifier, gate) for name, convert in methods.items()}
    path = write_result(
        "voice_conversion",
        {
            "command": "python benchmarks/voice_conversion.py " + " ".join(sys.argv[1:]),
            "model": verifier.encoder.fingerprint,
            "threshold_far1": threshold,
            "pairs": len(pairs),
            "converter": args.converter,
            "detector": args.detector,
            "methods": results,
        },
    )
    print(
        "voice conversion accepted as the target at far1: "
        + "; ".join(
            f"{name} {100 * r['acceptance_rate']:.0f} % (score {r['mean_score_before']:+.3f} -> {r['mean_score']:+.3f}, {r['seconds_per_conversion']:.1f} s each"
            + (f", no speech found {100 * r['no_speech_rate']:.0f} %" if r["no_speech_rate"] else "")
            + (
                f", gate flags {100 * r['flagged_rate']:.0f} %, accepted past it {100 * r['acceptance_rate_with_gate']:.0f} %"
                if gate is not None
                else ""
            )
            + ")"
            for name, r in results.items()
        )
        + f" over {len(pairs)} dev pairs -> {path}"
    )


if __name__ == "__main__":
    main()
