"""How the HTTP control plane reads a backend's answers: status text, body excerpt, Retry-After.

Shared by the history/config calls (``backend.py``) and the tool calls (``tool_http.py``),
in the engine process.
"""

from __future__ import annotations

import email.utils
import time

import httpx

BODY_EXCERPT_CHARS = 200


def retry_after_sec(response: httpx.Response) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date (RFC 9110)."""
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def status_text(response: httpx.Response) -> str:
    """``503 Service Unavailable``."""
    return f"{response.status_code} {response.reason_phrase}".strip()


def body_excerpt(response: httpx.Response) -> str:
    """The first BODY_EXCERPT_CHARS of the body, whitespace folded, quoted."""
    return _excerpt_of(response.text)


def error_excerpt(response: httpx.Response) -> str:
    """The ``error`` message of a JSON error body, else the body excerpt."""
    try:
        document = response.json()
    except ValueError:
        return body_excerpt(response)
    message = document.get("error") if isinstance(document, dict) else None
    return _excerpt_of(message) if isinstance(message, str) else body_excerpt(response)


def describe(exc: Exception) -> str:
    """An exception's type and message, for a log line."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _excerpt_of(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > BODY_EXCERPT_CHARS:
        text = text[:BODY_EXCERPT_CHARS] + "..."
    return repr(text) if text else "(empty body)"
