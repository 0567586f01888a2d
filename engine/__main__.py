"""`python -m engine` is `voice-engine`."""

import sys

from engine.cli import main

sys.exit(main())
