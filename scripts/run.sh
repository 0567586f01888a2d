#!/usr/bin/env bash
# Install into .venv (if needed) and serve on the embedded defaults:
# 127.0.0.1:50051, engine-only (local assistants), no API keys, no internet.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv ""
exec .venv/bin/voice-engine serve "$@"
