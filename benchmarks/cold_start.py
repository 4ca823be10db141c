"""Cold start of whole commands as a user runs them: `verify` of the README's two samples and `diarize` of the three
sample files in turns, each a fresh `cli.py` process, Keras against ONNX Runtime in alternating rounds (the ONNX
copies exported once before timing). Reports wall seconds per round, whether TensorFlow was imported and whether the
outputs agree.
Prints one line, writes benchmarks/results/cold_start.json.

    python benchmarks/cold_start.py [--rounds 3]
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from common import ROOT, write_result

RUNTIMES = ("keras", "onnx")
PROBE = "import sys; from deep_speaker.cli import main; code = main(sys.argv[1:]); print('TF' if 'tensorflow' in sys.modules else 'no TF'); sys.exit(code)"


def conversation(path: Path) -> float:
    """The three sample files in turns (half-second pauses, the audiobook sample twice), 16 kHz; returns seconds."""
    from deep_speaker.audio import read_audio

    book = read_audio(ROOT / "samples" / "1255-90413-0001.flac")
    philippe = [read_audio(ROOT / "samples" / "PhilippeRemy" / f"PhilippeRemy_00{k}.wav") for k in (1, 2)]
    gap = np.zeros(8000, np.float32)
    wave = np.concatenate([book, gap, philippe[0], gap, book[:32000], gap, philippe[1]])
    sf.write(path, wave, 16000)
    return wave.size / 16000


def run(arguments: list[str]) -> tuple[float, list[str], bool]:
    """(wall seconds, output lines without the probe's, TensorFlow imported) of one fresh process."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PROBE, *arguments], capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(arguments)} failed: {done.stderr.strip()}")
    lines = done.stdout.strip().splitlines()
    return seconds, lines[:-1], lines[-1] == "TF"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    samples = [str(ROOT / "samples" / "PhilippeRemy" / f"PhilippeRemy_00{k}.wav") for k in (1, 2)]
    with tempfile.TemporaryDirectory() as work:
        talk = Path(work) / "talk.wav"
        seconds = conversation(talk)
        commands = {"verify": ["verify", *samples], "diarize": ["diarize", str(talk), "--quiet"]}
        for command in commands.values():  # the ONNX copies exist before anything is timed
            run([*command, "--runtime", "onnx"])
        timings = {name: {runtime: [] for runtime in RUNTIMES} for name in commands}
        outputs, tensorflow = {}, {}
        for _ in range(args.rounds):
            for name, command in commands.items():
                for runtime in RUNTIMES:
                    wall, lines, imported = run([*command, "--runtime", runtime])
                    timings[name][runtime].append(round(wall, 2))
                    outputs.setdefault(name, {})[runtime] = lines
                    tensorflow.setdefault(name, {})[runtime] = imported
    agree = {name: outputs[name]["keras"] == outputs[name]["onnx"] for name in commands}
    result = {
        "command": f"python benchmarks/cold_start.py --rounds {args.rounds}",
        "seconds": timings,
        "tensorflow_imported": tensorflow,
        "outputs_agree": agree,
        "outputs": outputs,
        "diarized_recording_seconds": round(seconds, 1),
    }
    path = write_result("cold_start", result)
    summary = "; ".join(
        f"{name}: keras {min(t['keras']):.2f}-{max(t['keras']):.2f} s, onnx {min(t['onnx']):.2f}-{max(t['onnx']):.2f} s"
        f" (TF on onnx: {tensorflow[name]['onnx']}, same output: {agree[name]})"
        for name, t in timings.items()
    )
    print(f"cold start ({args.rounds} alternating rounds): {summary} -> {path}")


if __name__ == "__main__":
    main()
