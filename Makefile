# Conveniences; the scripts are the real thing (a fresh machine may have no make).
.PHONY: run test proto

## run: install into .venv and serve on the embedded defaults
run:
	scripts/run.sh

## test: install, lint, type-check and run the whole test suite (what CI runs)
test:
	scripts/test.sh

## proto: regenerate generated/ from proto/
proto:
	bash -c 'source scripts/_venv.sh && ensure_venv "[test]"'
	scripts/gen_proto.sh .venv/bin/python
