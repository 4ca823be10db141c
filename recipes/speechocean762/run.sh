#!/usr/bin/env bash
# Reproduces the shipped models (deep_speaker/pretrained/) from ../shared/data/speechocean762 on CPU, about 1 h 10 min
# on 2 cores: features 15 s, augmented copies 4 min, ECAPA-TDNN about 50 min, GE2E import, fusion, back ends and
# calibration about 12 min. (Large-margin fine-tuning, recipes/speechocean762/ecapa_lmf.yaml, did not improve the
# held-out EER of the training speakers, so the shipped model is the ECAPA-TDNN as trained.)
# Usage: bash recipes/speechocean762/run.sh [WORKING_DIR] [RESEMBLYZER_PT]
#   RESEMBLYZER_PT: Resemblyzer's pretrained.pt (in its wheel: `pip download resemblyzer==0.1.4 --no-deps`, unzip it,
#   resemblyzer/pretrained.pt); default: the copy in ../shared/fixtures.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=../shared/data/speechocean762
WD=${1:-wd/so}
GE2E_PT=${2:-../shared/fixtures/pytorch_import/resemblyzer/pretrained.pt}
OUT=deep_speaker/pretrained
python cli.py build-features --audio-dir "$DATA/train" --working-dir "$WD" --recipe recipes/speechocean762/ecapa.yaml
python cli.py augment-cache --working-dir "$WD" --copies 6 --speed-perturbation \
  --noise-dir ../shared/data/noise --rir-dir ../shared/data/rir --channel-probability 0.3
python cli.py train-softmax --working-dir "$WD" --recipe recipes/speechocean762/ecapa.yaml
cp "$WD/softmax/best.keras" "$OUT/deep_speaker.keras"
# the default system: our model and Resemblyzer's GE2E, each cosine z-normalised on the training speakers, averaged
python cli.py import-model resemblyzer "$GE2E_PT" "$OUT/ge2e_resemblyzer.keras"
python cli.py fuse "$OUT/ge2e_resemblyzer.keras" "$OUT/deep_speaker.keras" "$OUT/default.fusion.json" --audio-dir "$DATA/train"
for MODEL in deep_speaker.keras ge2e_resemblyzer.keras default.fusion.json; do
  python cli.py fit-backend --checkpoint-file "$OUT/$MODEL" --scorer asnorm --audio-dir "$DATA/train" --save-to "$OUT/models"
  for SCORER in cosine asnorm; do
    python cli.py calibrate --force --checkpoint-file "$OUT/$MODEL" --scorer "$SCORER" --trials "$DATA/dev_trials.txt" --audio-root "$DATA/dev"
  done
done
