#!/usr/bin/env bash
# Regenerates generated/ from proto/. Never edit generated/ by hand.
# Usage: scripts/gen_proto.sh [PYTHON]   (default: .venv/bin/python, else python3)
# GEN_OUT=DIR writes somewhere else (the staleness check compares DIR with generated/).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
BIN="$(dirname "$PY")"
OUT="${GEN_OUT:-generated}"
rm -rf "$OUT/voiceengine"
mkdir -p "$OUT"
"$PY" -m grpc_tools.protoc -I proto \
  --python_out="$OUT" \
  --grpc_python_out="$OUT" \
  --plugin=protoc-gen-mypy="$BIN/protoc-gen-mypy" --mypy_out=quiet:"$OUT" \
  --plugin=protoc-gen-mypy_grpc="$BIN/protoc-gen-mypy_grpc" --mypy_grpc_out=quiet:"$OUT" \
  $(cd proto && find . -name '*.proto' | sort | sed 's|^\./||')
# Make every generated directory an importable, typed package.
find "$OUT/voiceengine" -type d | while read -r d; do
  [ -f "$d/__init__.py" ] || printf '"""Generated from proto/ by scripts/gen_proto.sh; do not edit."""\n' > "$d/__init__.py"
  touch "$d/py.typed"
done
