"""A subscription to a pilot's state changes (:meth:`Pilot.events`)."""

from __future__ import annotations

import math

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from ..engine import StateChanged

__all__ = ("EventStream",)


class EventStream:
    """The state changes of a pilot from the moment this stream was made."""

    def __init__(self, subscribers: list[MemoryObjectSendStream[StateChanged]]) -> None:
        self._send, self._recv = anyio.create_memory_object_stream[StateChanged](math.inf)
        self._subscribers = subscribers
        subscribers.append(self._send)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> StateChanged:
        try:
            return await self._recv.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None

    def end(self) -> None:
        """No more events: the iteration ends once the ones already in are read."""
        if self._send in self._subscribers:
            self._subscribers.remove(self._send)
        self._send.close()

    def drain(self) -> list[StateChanged]:
        """The events already in, without waiting (e.g. once the reader is cancelled)."""
        out: list[StateChanged] = []
        while True:
            try:
                out.append(self._recv.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                return out

    async def aclose(self) -> None:
        """Stop collecting events."""
        self.end()
        self._recv.close()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
