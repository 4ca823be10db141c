#!/usr/bin/env bash
# The reference's schedule on LibriSpeech, streamed from feature shards (recipes/librispeech/README.md):
# softmax pre-training on train-clean-360 (921 speakers), then triplet training on all of it (2,484 speakers).
# Usage: bash recipes/librispeech/run.sh [DATA_DIR] [WORKING_DIR] [training flags, e.g. --strategy mirrored]
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${1:-LibriSpeech_data}
WD=${2:-wd/librispeech}
shift $(( $# < 2 ? $# : 2 ))
SUBSETS=(train-clean-100 train-clean-360 train-other-500 dev-clean dev-other test-clean test-other)
./download_librispeech.sh "$DATA" "${SUBSETS[@]}"
# every recording of every subset, speaker = the first field of its name (LibriSpeech's spk-chapter-utt.flac)
find "$DATA/LibriSpeech" -name '*.flac' | sort | awk -F/ '{split($NF, f, "-"); print $0 "," f[1]}' > "$DATA/all.csv"
python cli.py build-shards --audio-dir "$DATA/LibriSpeech/train-clean-360" --working-dir "$WD/clean360"
python cli.py build-shards --audio-dir "$DATA/all.csv" --working-dir "$WD/all"
python cli.py train-softmax --working-dir "$WD/clean360" --recipe recipes/librispeech/softmax.yaml "$@"
python cli.py train-triplet --working-dir "$WD/all" --recipe recipes/librispeech/triplet.yaml \
  --initial-checkpoint "$WD/clean360/softmax/best.keras" "$@"
# the reference's closed-set protocol (its published 2.5 % EER): test-clean's speakers were trained on, the utterances
# test-model holds out (each speaker's last 20 %, by path) are the ones the shards held out of training
python cli.py build-features --audio-dir "$DATA/LibriSpeech/test-clean" --working-dir "$WD/test-clean"
python cli.py test-model --working-dir "$WD/test-clean" --checkpoint-file "$WD/all/triplet/best.keras"
