"""What a simulated client gets back: a small future that the simulator completes while it
runs, and the errors only a simulated client can see.

Owns: `SimFuture` (done / result() / error, when it was submitted and completed in
virtual time, callbacks run when it completes, and `info`: what the request used that the
caller may want even when it fails, such as the write timestamp) and `ConnectionLost`
(the coordinator crashed before answering, as a real
driver sees a closed connection). Protocol errors (Unavailable, WriteTimeout, ...) are the
coordinator's own `AgoraError`s, passed through unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agora.core.types import NodeId


class ConnectionLost(Exception):
    """The coordinator went away (crashed) with the request unanswered."""


class NotDone(AssertionError):
    """`result()` of a request the simulator has not finished yet: run it longer."""


class SimFuture:
    """The outcome of one client request. `transform` maps a successful raw result (what
    the node's Reply carried) to what the caller asked for (rows instead of a partition)."""

    __slots__ = ("op", "via", "client_id", "submitted_ms", "completed_ms", "done", "_value",
                 "_error", "_transform", "_callbacks", "info")

    def __init__(self, op: str, via: NodeId, submitted_ms: int,
                 transform: Callable[[Any], Any] | None = None) -> None:
        self.op = op
        self.via = via
        self.client_id: int | None = None
        self.submitted_ms = submitted_ms
        self.completed_ms: int | None = None
        self.done = False
        self._value: Any = None
        self._error: BaseException | None = None
        self._transform = transform
        self._callbacks: list[Callable[[SimFuture], None]] = []
        self.info: dict[str, Any] = {}

    def add_done_callback(self, callback: Callable[[SimFuture], None]) -> None:
        """Call `callback(self)` when the request completes (at once if it has)."""
        if self.done:
            callback(self)
        else:
            self._callbacks.append(callback)

    def _complete(self, now_ms: int, value: Any = None, error: BaseException | None = None) -> None:
        assert not self.done, f"{self!r} completed twice"
        if error is None and self._transform is not None:
            value = self._transform(value)
        self.done = True
        self.completed_ms = now_ms
        self._value = value
        self._error = error
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)

    @property
    def ok(self) -> bool:
        return self.done and self._error is None

    @property
    def error(self) -> BaseException | None:
        """The error the request failed with, None while pending or on success."""
        return self._error

    def result(self) -> Any:
        if not self.done:
            raise NotDone(f"{self.op} via {self.via} is still pending: run the simulator longer")
        if self._error is not None:
            raise self._error
        return self._value

    @property
    def latency_ms(self) -> int | None:
        return None if self.completed_ms is None else self.completed_ms - self.submitted_ms

    def __repr__(self) -> str:
        if not self.done:
            state = "pending"
        elif self._error is not None:
            state = f"error={self._error!r}"
        else:
            state = f"value={self._value!r}"
        return f"<SimFuture {self.op} via {self.via} {state}>"
