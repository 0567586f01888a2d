"""A session's outgoing events, in order, with a fast lane for interruption.

Events queue here until the transport takes them. When a response is interrupted its
queued audio is worthless (the client would play it and then be told to drop it), so
``interrupt`` removes it and puts the interruption where that audio stood: the
`interrupted` event overtakes the cut response's audio and nothing else.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable

from engine.runtime.events import Event, droppable_on_interrupt, response_of


class Outbox:
    """Unbounded FIFO of events, closed once with ``close``."""

    def __init__(self) -> None:
        # Unbounded: producers that can outrun the client wait in ``room_for`` (audio),
        # and an `ended` must never wait for a client that stopped reading.
        self._queue: deque[Event] = deque()
        self._arrived = asyncio.Event()
        self._taken = asyncio.Event()
        self._closed = False

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, event: Event) -> None:
        """Queue an event behind everything already queued."""
        self._queue.append(event)
        self._arrived.set()

    def interrupt(self, response_id: str, cut: Callable[[list[Event]], list[Event]]) -> None:
        """Drop ``response_id``'s droppable events; queue ``cut(dropped)`` in their place.

        ``cut`` gets what was dropped (so it can tell what really reached the client)
        and returns the events that announce the interruption.
        """
        first: int | None = None
        kept: deque[Event] = deque()
        dropped: list[Event] = []
        for event in self._queue:
            if response_of(event) == response_id and droppable_on_interrupt(event):
                if first is None:
                    first = len(kept)
                dropped.append(event)
                continue
            kept.append(event)
        at = len(kept) if first is None else first
        for offset, event in enumerate(cut(dropped)):
            kept.insert(at + offset, event)
        self._queue = kept
        self._arrived.set()

    async def room_for(self, at_most: int) -> None:
        """Wait until no more than ``at_most`` events are queued (the client reads on)."""
        while len(self._queue) > at_most and not self._closed:
            self._taken.clear()
            await self._taken.wait()

    def close(self) -> None:
        """No more events: the iterator ends once the queue is empty."""
        self._closed = True
        self._arrived.set()
        self._taken.set()

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            while self._queue:
                event = self._queue.popleft()
                self._taken.set()
                yield event
            if self._closed:
                return
            self._arrived.clear()
            await self._arrived.wait()
