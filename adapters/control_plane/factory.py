"""Choose and build the control-plane adapter from Settings (BACKEND_MODE x BACKEND_URL)."""

from __future__ import annotations

import logging
from typing import Literal

from adapters.control_plane.backend import HttpControlPlane
from adapters.control_plane.null import NullControlPlane
from engine.observability.logs import redact_url
from engine.runtime.ports.control_plane import ControlPlane
from engine.settings import Settings

logger = logging.getLogger(__name__)

AdapterKind = Literal["http", "null"]


def choose_control_plane(settings: Settings) -> AdapterKind:
    """Which adapter the settings select.

    auto: HTTP only when BACKEND_URL is set; http: HTTP, or null (with a warning) when
    BACKEND_URL is missing; disabled: null.
    """
    if settings.backend_mode == "disabled":
        return "null"
    if settings.backend_url:
        return "http"
    if settings.backend_mode == "http":
        logger.warning(
            "BACKEND_MODE=http but BACKEND_URL is not set: running engine-only, assistants "
            "come from %s and no history is written",
            settings.assistant_local_config_dir,
        )
    return "null"


def build_control_plane(settings: Settings) -> ControlPlane:
    """Build the adapter ``choose_control_plane`` selects.

    HISTORY_ENABLED=false turns history writes off whichever adapter is chosen; check
    ``isinstance(result, HttpControlPlane)`` (or ``choose_control_plane``) to see which.
    """
    if choose_control_plane(settings) == "http" and settings.backend_url:
        logger.info("control plane: HTTP backend at %s", redact_url(settings.backend_url))
        return HttpControlPlane(
            settings.backend_url,
            api_key=settings.backend_api_key,
            timeout_sec=settings.backend_timeout_sec,
            history_enabled=settings.history_enabled,
            config_cache_ttl_sec=settings.assistant_config_cache_ttl_sec,
        )
    logger.info(
        "control plane: engine-only, assistants from %s", settings.assistant_local_config_dir
    )
    return NullControlPlane(
        settings.assistant_local_config_dir, history_enabled=settings.history_enabled
    )


def history_enabled(settings: Settings) -> bool:
    """True when call history is written: a backend to write to, and HISTORY_ENABLED on."""
    return settings.history_enabled and choose_control_plane(settings) == "http"
