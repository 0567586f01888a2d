"""API keys: who may open a Converse stream, and which assistants each key may use.

Keys come from ``ENGINE_API_KEYS`` (comma-separated, any assistant) and
``ENGINE_API_KEYS_FILE`` (one key per line, optionally followed by the assistant ids it
is limited to; ``#`` starts a comment), reread on SIGHUP. Only SHA-256 digests are kept;
a presented token is compared with every digest in constant time. A key is named in logs
and metrics by a short label derived from its digest, never by itself.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_BEARER = "bearer "


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One accepted key: its label (safe to log) and the assistants it may use."""

    label: str
    digest: bytes
    assistants: frozenset[str] | None = None  # None: any assistant

    def permits(self, assistant_id: str) -> bool:
        """True when this key may talk to ``assistant_id``."""
        return self.assistants is None or assistant_id in self.assistants


class AuthFailure(Exception):
    """The caller presented no key or a wrong one; ``reason`` is an ErrorInfo reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _key(token: str, assistants: Iterable[str] | None = None) -> ApiKey:
    digest = _digest(token)
    allowed = frozenset(assistants) if assistants is not None else None
    return ApiKey(f"key-{digest.hex()[:10]}", digest, allowed or None)


def parse_key_file(text: str) -> list[ApiKey]:
    """Keys from the file format (``KEY [assistant_id ...]`` per line)."""
    keys = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if fields:
            keys.append(_key(fields[0], fields[1:] or None))
    return keys


class ApiKeyRing:
    """The keys in force; empty means authentication is off."""

    def __init__(self, keys: Sequence[str] = (), file: Path | None = None) -> None:
        self._static = [_key(token) for token in keys]
        self._file = file
        self._keys: list[ApiKey] = list(self._static)
        if file is not None:
            self._keys = self._static + parse_key_file(file.read_text())

    @property
    def enabled(self) -> bool:
        """True when Converse requires a key."""
        return bool(self._keys) or self._file is not None

    def __len__(self) -> int:
        return len(self._keys)

    def reload(self) -> None:
        """Reread ENGINE_API_KEYS_FILE (on SIGHUP); a broken file keeps the old keys."""
        if self._file is None:
            return
        try:
            loaded = parse_key_file(self._file.read_text())
        except OSError as exc:
            log.warning(
                "API keys: cannot reread %s (%s); keeping %d keys",
                self._file,
                type(exc).__name__,
                len(self._keys),
            )
            return
        self._keys = self._static + loaded
        log.info("API keys: %d in force after rereading %s", len(self._keys), self._file)

    def authenticate(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> ApiKey | None:
        """The key presented in ``authorization: Bearer``; None when auth is off.

        Raises AuthFailure when a key is required and missing or unknown.
        """
        if not self.enabled:
            return None
        header = ""
        for name, value in metadata or ():
            if name.lower() == "authorization" and isinstance(value, str):
                header = value
                break
        if not header.lower().startswith(_BEARER) or not header[len(_BEARER) :].strip():
            raise AuthFailure(
                "API_KEY_MISSING", "this engine requires `authorization: Bearer <API key>`"
            )
        presented = _digest(header[len(_BEARER) :].strip())
        found: ApiKey | None = None
        for key in self._keys:  # no early exit: the time taken does not depend on the match
            if hmac.compare_digest(presented, key.digest):
                found = key
        if found is None:
            raise AuthFailure("API_KEY_INVALID", "the API key is not valid")
        return found
