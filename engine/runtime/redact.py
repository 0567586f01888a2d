"""What may be logged about a history write above DEBUG: its kind and keys, never its text.

History entries carry what the caller said (a card number, an address); logs at INFO and
above name the write, and the whole entry is logged only at DEBUG.
"""

from __future__ import annotations


def describe(write: object) -> str:
    """``TranscriptEntry(call_id=..., sequence=...)``, without any text."""
    keys = [
        f"{name}={getattr(write, name)!s}"
        for name in ("call_id", "sequence", "role")
        if getattr(write, name, None) is not None
    ]
    return f"{type(write).__name__}({', '.join(keys)})"
