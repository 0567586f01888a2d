# Every target creates .venv and installs what it needs; nothing else is assumed but
# python3 (3.11+), pip and npm (for buf).
VENV ?= .venv
PY := $(VENV)/bin/python
BUF_VERSION := 1.75.0
BUF := .tools/node_modules/.bin/buf

.PHONY: run test lint check-generated proto buf-lint unit

$(VENV)/.runtime: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.test: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@ $(VENV)/.runtime

$(BUF):
	npm install --silent --no-save --no-audit --no-fund --prefix .tools @bufbuild/buf@$(BUF_VERSION)

## run: install and serve on the embedded defaults (no backend, no keys, no internet)
run: $(VENV)/.runtime
	$(VENV)/bin/voice-engine serve

## proto: regenerate generated/ from proto/
proto: $(VENV)/.test
	scripts/gen_proto.sh $(PY)

check-generated: $(VENV)/.test
	rm -rf .tools/gen-check && mkdir -p .tools/gen-check
	GEN_OUT=.tools/gen-check scripts/gen_proto.sh $(PY)
	diff -r generated/voiceengine .tools/gen-check/voiceengine || \
		(echo "generated/ is stale: run 'make proto' and commit the result" >&2; exit 1)

buf-lint: $(BUF)
	$(BUF) lint

lint: $(VENV)/.test buf-lint check-generated
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

## test: install, lint, type-check and run the whole test suite
test: lint
	$(VENV)/bin/pytest -q
