#!/usr/bin/env bash
# The peers' environment of `benchmarks/speed.py --peer-python benchmarks/work/peers/bin/python`: PyTorch (CPU build),
# Resemblyzer and SpeechBrain, kept apart from the toolkit's environment (benchmarks/work/ is git-ignored).
# SpeechBrain imports torchaudio at start-up, though its ECAPA-TDNN and Fbank never call it, and the registry has no
# torchaudio built for this CPU torch: its Python part is installed without its C extensions.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv benchmarks/work/peers
benchmarks/work/peers/bin/pip install "torch==2.13.0+cpu" resemblyzer speechbrain "setuptools<80"
benchmarks/work/peers/bin/pip install --no-deps torchaudio==2.11.1
rm -f benchmarks/work/peers/lib/python3*/site-packages/torchaudio/lib/*.so
