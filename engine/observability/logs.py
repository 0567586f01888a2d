"""Log set-up: text or JSON lines, the session and call id on every line, quiet httpx.

The ids live in context variables set by the protocol edge when a session starts; every
task the session creates afterwards inherits them, so a line logged anywhere on behalf
of the call carries them.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time

session_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("session_id", default="")
call_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("call_id", default="")

_TEXT_FORMAT = "%(asctime)s %(levelname)s {role}%(name)s: %(message)s%(call_ids)s"


class _CallIds(logging.Filter):
    """Adds ``session_id``/``call_id`` (and a text suffix) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        session_id = session_id_var.get()
        call_id = call_id_var.get()
        record.session_id = session_id
        record.call_id = call_id
        record.call_ids = f" [session={session_id} call={call_id}]" if session_id else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, session_id, call_id."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "session_id": getattr(record, "session_id", ""),
            "call_id": getattr(record, "call_id", ""),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(
    level: str, fmt: str = "text", *, http_requests: bool = False, role: str = ""
) -> None:
    """Configure the root logger once, at start-up (`voice-engine serve`).

    ``role`` ("supervisor ", "worker-1 ") prefixes text lines of `serve --workers N`.
    """
    handler = logging.StreamHandler()
    handler.addFilter(_CallIds())
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else logging.Formatter(_TEXT_FORMAT.format(role=role))
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if not http_requests:
        # httpx logs every request line (with its URL) at INFO; opt in with
        # ENGINE_LOG_HTTP_REQUESTS=true.
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)


def redact_url(url: str) -> str:
    """``url`` with any password (and user) replaced, safe to log."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rsplit("@", 1)[1]
    return f"{scheme}://{authority}{slash}{path}"
