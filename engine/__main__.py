"""`python -m engine` is `voice-engine`."""

import sys

from engine.cli import main

# Guarded: the ASR decoder process (multiprocessing, spawn) imports this module again.
if __name__ == "__main__":
    sys.exit(main())
