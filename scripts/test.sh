#!/usr/bin/env bash
# Install everything into .venv and .tools, then run every check CI runs:
# buf lint, the stale-generated-code check, ruff, mypy (strict) and the whole test suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -k voice).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv "[test]"

BUF_VERSION=1.75.0
BUF=.tools/node_modules/.bin/buf
if [ ! -x "$BUF" ] || ! "$BUF" --version 2>/dev/null | grep -qx "$BUF_VERSION"; then
  npm install --silent --no-save --no-audit --no-fund --prefix .tools "@bufbuild/buf@$BUF_VERSION"
fi

echo "== buf lint"
"$BUF" lint

echo "== generated/ is up to date"
rm -rf .tools/gen-check && mkdir -p .tools/gen-check
GEN_OUT=.tools/gen-check scripts/gen_proto.sh .venv/bin/python
if ! diff -r -x __pycache__ generated/voiceengine .tools/gen-check/voiceengine; then
  echo "generated/ is stale: run 'scripts/gen_proto.sh' (or 'make proto') and commit it" >&2
  exit 1
fi

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

echo "== mypy (strict: engine/, adapters/)"
.venv/bin/mypy

echo "== pytest"
if [ $# -gt 0 ]; then
  .venv/bin/pytest -q "$@"
  exit
fi
# tests/deploy (the real Envoy in front of engine processes, manifest checks) mostly waits
# on health-check intervals and child processes: run it beside the rest, report it after.
mkdir -p .tools
.venv/bin/pytest -q -p no:cacheprovider tests/deploy > .tools/pytest-deploy.log 2>&1 &
deploy_pid=$!
main_status=0
.venv/bin/pytest -q --ignore=tests/deploy || main_status=$?
deploy_status=0
wait "$deploy_pid" || deploy_status=$?
echo "== pytest tests/deploy (ran in parallel)"
cat .tools/pytest-deploy.log
[ "$main_status" -eq 0 ] && [ "$deploy_status" -eq 0 ]
