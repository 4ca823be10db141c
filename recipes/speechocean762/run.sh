#!/usr/bin/env bash
# Reproduces the shipped model (deep_speaker/pretrained/deep_speaker.keras) from ../shared/data/speechocean762 on CPU.
# Usage: bash recipes/speechocean762/run.sh [WORKING_DIR] [HEAD_RECIPE]
#   HEAD_RECIPE: a head recipe to fuse onto the base, or "none" to ship the triplet base alone.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=../shared/data/speechocean762
WD=${1:-wd/speechocean762}
HEAD=${2:-recipes/speechocean762/head_dense.yaml}
python cli.py build-mfcc --audio_dir "$DATA/train" --working_dir "$WD" --energies log --normalisation utterance
python cli.py train-softmax --working_dir "$WD" --recipe recipes/speechocean762/softmax.yaml
python cli.py train-triplet --working_dir "$WD" --recipe recipes/speechocean762/triplet.yaml
MODEL="$WD/triplet/best.keras"
if [ "$HEAD" != none ]; then
  python cli.py train-head --working_dir "$WD" --checkpoint_file "$MODEL" --recipe "$HEAD"
  MODEL=$(python -c "import sys; from deep_speaker.config import load_recipe; r = load_recipe('head', sys.argv[1]); print(f'{sys.argv[2]}/head_{r.head.head}_{r.loss.name}/fused_{r.head.fusion}.keras')" "$HEAD" "$WD")
fi
cp "$MODEL" deep_speaker/pretrained/deep_speaker.keras
python cli.py calibrate --force --checkpoint_file deep_speaker/pretrained/deep_speaker.keras --trials "$DATA/dev_trials.txt" --audio_root "$DATA/dev"
