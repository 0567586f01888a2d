#!/usr/bin/env bash
# Install what the example clients need and build them; idempotent (fast when done before).
#   Node.js: clients/node, `npm ci` from its lock file (npm cache in .tools/npm-cache)
#   Go:      Debian's Go toolchain and gRPC/protobuf sources, built in GOPATH mode (no module
#            proxy here); protoc-gen-go built from /usr/share/gocode, since Debian's own
#            binary predates proto3 `optional`
#   Stubs:   `buf generate` (buf.gen.yaml) with local plugins: Python, Go, TypeScript (then
#            type-checked with tsc)
# Needs .venv (scripts/test.sh makes it) and buf: BUF=path, default .tools/node_modules/.bin/buf.
# The binaries: node clients/node/converse.js, .tools/go/bin/voice-engine-converse, and the
# Go load client of benchmarks/load.py (--client go), .tools/go/bin/voice-engine-load.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
BUF="${BUF:-.tools/node_modules/.bin/buf}"

APT_PACKAGES=(golang-go golang-google-grpc-dev golang-google-protobuf-dev
  golang-github-golang-protobuf-1-5-dev protoc-gen-go-grpc protobuf-compiler)
GO_CLIENT=yes
if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
  # The Go client is built from Debian's packages; its tests skip (and fail under CI=true).
  echo "not a Debian system: the Go client is not built"
  GO_CLIENT=no
else
  missing=()
  for package in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed"; then
      missing+=("$package")
    fi
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
  fi
fi

# Node: reinstall only when the lock file changed since the last install.
if [ ! -f clients/node/node_modules/.package-lock.json ] ||
  [ clients/node/package-lock.json -nt clients/node/node_modules/.package-lock.json ]; then
  npm ci --prefix clients/node --silent --no-audit --no-fund --cache "$ROOT/.tools/npm-cache"
fi

if [ "$GO_CLIENT" = no ]; then
  echo "clients built: node clients/node/converse.js"
  exit 0
fi
GO_TOOLS="$ROOT/.tools/go"
export GO111MODULE=off GOPATH="$GO_TOOLS/gopath:/usr/share/gocode" GOCACHE="$GO_TOOLS/cache"
GO_PACKAGE_DIR="$GO_TOOLS/gopath/src/github.com/voice-engine/voice-engine"
mkdir -p "$GO_TOOLS/bin" "$GO_PACKAGE_DIR"
ln -sfn "$ROOT/clients" "$GO_PACKAGE_DIR/clients" # the client's import path, in GOPATH
ln -sfn "$ROOT/benchmarks" "$GO_PACKAGE_DIR/benchmarks" # the load client's (benchmarks/goload)
if [ ! -x "$GO_TOOLS/bin/protoc-gen-go" ]; then
  go build -o "$GO_TOOLS/bin/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go
fi

PATH="$ROOT/scripts:$GO_TOOLS/bin:$ROOT/clients/node/node_modules/.bin:$ROOT/.venv/bin:$PATH" \
  "$BUF" generate
# The TypeScript stubs must compile against the grpc-js and protobuf runtimes the lock pins.
clients/node/node_modules/.bin/tsc --noEmit --strict --esModuleInterop --module commonjs \
  --target es2020 --skipLibCheck clients/node/gen/voiceengine/v1/converse.ts

(cd "$GO_PACKAGE_DIR/clients/go" && go vet ./cmd/converse &&
  go build -o "$GO_TOOLS/bin/voice-engine-converse" ./cmd/converse)
(cd "$GO_PACKAGE_DIR/benchmarks/goload" && go vet . &&
  go build -o "$GO_TOOLS/bin/voice-engine-load" .)
echo "clients built: node clients/node/converse.js, $GO_TOOLS/bin/voice-engine-converse" \
  "(and benchmarks/load.py --client go: $GO_TOOLS/bin/voice-engine-load)"
