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

echo "== buf breaking (against the previous commit)"
# On main, HEAD~1 is main before the change under test (a merge's first parent).
if ! BASE="$(git rev-parse -q --verify 'HEAD~1^{commit}' 2>/dev/null)"; then
  echo "skipped: no previous commit in this clone (first commit or a shallow clone)"
elif ! git cat-file -e "$BASE:proto" 2>/dev/null; then
  echo "skipped: the previous commit ($BASE) has no proto/"
elif [[ "$(git show "$BASE:proto/voiceengine/v1/converse.proto" 2>/dev/null)" == *go_package* ]]; then
  "$BUF" breaking --against ".git#ref=$BASE"
else
  # The previous commit predates the per-language file options (go_package, java_*, ...):
  # setting them once is the point, so only that one transition skips the FILE_SAME_* checks.
  echo "previous commit has no per-language file options yet: FILE rules less FILE_SAME_*"
  "$BUF" breaking --against ".git#ref=$BASE" --config '{"version": "v2",
    "modules": [{"path": "proto"}], "breaking": {"use": ["FILE"], "except": [
    "FILE_SAME_GO_PACKAGE", "FILE_SAME_JAVA_PACKAGE", "FILE_SAME_JAVA_MULTIPLE_FILES",
    "FILE_SAME_JAVA_OUTER_CLASSNAME", "FILE_SAME_CSHARP_NAMESPACE", "FILE_SAME_OBJC_CLASS_PREFIX",
    "FILE_SAME_PHP_NAMESPACE", "FILE_SAME_RUBY_PACKAGE"]}}'
fi

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

echo "== example clients (Node.js, Go): install and build"
BUF="$BUF" bash scripts/clients.sh

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
.venv/bin/pytest -q --ignore=tests/deploy -m "not realtime_speech" || main_status=$?
deploy_status=0
wait "$deploy_pid" || deploy_status=$?
echo "== pytest tests/deploy (ran in parallel)"
cat .tools/pytest-deploy.log
# Speech tests whose audio must flow in real time (barge-in over playing audio, interim
# transcripts, the silence clock) run last and alone, with no other test on the CPU.
echo "== pytest -m realtime_speech (alone)"
realtime_status=0
.venv/bin/pytest -q --ignore=tests/deploy -m realtime_speech || realtime_status=$?
[ "$main_status" -eq 0 ] && [ "$deploy_status" -eq 0 ] && [ "$realtime_status" -eq 0 ]
