#!/usr/bin/env bash
# Download and unpack the LibriSpeech parts the reference Deep Speaker trains and tests on.
# Usage: ./download_librispeech.sh [DEST] [SUBSET ...]
#   DEST defaults to ./LibriSpeech_data; SUBSETs default to: train-clean-100 train-clean-360 test-clean
# Resumable: partial downloads continue (curl -C -), finished and verified archives are not fetched again,
# and an archive is unpacked only once (a .done marker is written after a complete extraction).
set -euo pipefail

DEST=${1:-LibriSpeech_data}
shift || true
SUBSETS=("$@")
[ ${#SUBSETS[@]} -gt 0 ] || SUBSETS=(train-clean-100 train-clean-360 test-clean)
BASE_URL=${LIBRISPEECH_URL:-https://www.openslr.org/resources/12}

# MD5 sums published by OpenSLR (resources/12/md5sum.txt)
declare -A MD5=(
  [dev-clean]=42e2234ba48799c1f50f24a7926300a1
  [dev-other]=c8d0bcc9cca99d4f8b62fcc847357931
  [test-clean]=32fa31d27d2e1cad72775fee3f4849a9
  [test-other]=fb5a50374b501bb3bac4815ee91d3135
  [train-clean-100]=2a93770f6d5c6c964bc36631d331a522
  [train-clean-360]=c0e676e450a7ff2f54aeade5171606fa
  [train-other-500]=d1a0fd59409feb2c614ce4d30c387708
)

mkdir -p "$DEST"
cd "$DEST"
for subset in "${SUBSETS[@]}"; do
  expected=${MD5[$subset]:-}
  [ -n "$expected" ] || { echo "unknown subset $subset; choose from ${!MD5[*]}" >&2; exit 2; }
  archive="$subset.tar.gz"
  if [ -f "$subset.done" ]; then
    echo "$subset: already unpacked"
    continue
  fi
  if ! { [ -f "$archive" ] && echo "$expected  $archive" | md5sum -c --status; }; then
    echo "$subset: downloading"
    curl -fL -C - -o "$archive.part" "$BASE_URL/$archive" || curl -fL -o "$archive.part" "$BASE_URL/$archive"
    mv "$archive.part" "$archive"
    echo "$expected  $archive" | md5sum -c - || { echo "$subset: checksum mismatch, delete $archive and retry" >&2; exit 1; }
  fi
  echo "$subset: unpacking"
  tar -xzf "$archive"
  touch "$subset.done"
done
echo "done: build the feature cache with"
echo "  python cli.py build-mfcc --audio_dir $DEST/LibriSpeech/train-clean-360 --working_dir wd"
