"""When the caller reaches a point of their own audio: stream time against wall time (event loop).

A client may send faster than real time (a recorded file, a test harness, a load tester)
or in bursts (jittered chunks, silence suppression). A deadline about what the caller
waits for must count from the moment the caller is at that point of the audio, not from
when its bytes happened to arrive: a turn whose end arrives 3 s ahead of real time has a
caller who is not waiting yet.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class AudioClock:
    """Maps stream offsets (ms of audio received) to the monotonic time they are live.

    The stream's origin is the latest ``arrival - offset`` seen: audio that arrives
    ahead of real time does not move it; a gap in the input (the client paused) moves it
    on, so a resumed stream is live from its resumption.
    """

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._origin: float | None = None

    def received(self, offset_ms: int) -> None:
        """Audio up to ``offset_ms`` of the stream has arrived now."""
        anchor = self._now() - offset_ms / 1000
        if self._origin is None or anchor > self._origin:
            self._origin = anchor

    def live_at(self, offset_ms: int) -> float:
        """The monotonic time at which the caller is (or was) at ``offset_ms``."""
        if self._origin is None:
            return self._now()
        return self._origin + offset_ms / 1000

    def ahead_sec(self, offset_ms: int) -> float:
        """How far ahead of the caller ``offset_ms`` arrived (0 when not ahead)."""
        return max(0.0, self.live_at(offset_ms) - self._now())
