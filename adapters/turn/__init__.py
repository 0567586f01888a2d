"""Turn-completion models behind the turn-detector port (engine/runtime/ports/turn.py)."""
