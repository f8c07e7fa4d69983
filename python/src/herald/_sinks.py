"""Sinks: where events go (JSON Lines, memory for tests; the terminal and the hub have
modules of their own), and the per-sink tick throttle of crates/herald/src/throttle.rs.

Sinks run on the reporter's background thread, never on the caller's. Each sees each
run's events in order, with its own dense `seq` from 1.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from dataclasses import dataclass
from typing import IO, Any, Callable

from ._wire import encode_line


@dataclass(frozen=True)
class SinkPolicy:
    """How a sink wants `progress` ticks (docs/sdk.md): at most one per `min_percent`
    points or per `max_interval` seconds, a stage's last count always, and a heartbeat
    after `keepalive` seconds of silence while a run is open."""

    every_tick: bool = False
    min_percent: float = 10.0
    max_interval: float = 5.0
    keepalive: float | None = 10.0


EVERY_TICK = SinkPolicy(every_tick=True, min_percent=0.0, max_interval=0.0, keepalive=None)


class Event:
    """One event as a sink receives it: already numbered for that sink."""

    __slots__ = ("event", "run", "seq", "ts", "parent", "fields")

    def __init__(
        self, event: str, run: str, seq: int, ts: str, parent: str | None, fields: dict[str, Any]
    ) -> None:
        self.event = event
        self.run = run
        self.seq = seq
        self.ts = ts
        self.parent = parent
        self.fields = fields

    def line(self, id: str | None = None) -> str:  # noqa: A002
        return encode_line(self.event, self.run, self.seq, self.ts, self.fields, self.parent, id)

    def to_dict(self) -> dict[str, Any]:
        event: dict[str, Any] = json.loads(self.line())
        return event

    def __repr__(self) -> str:
        return f"Event({self.line()})"


class Sink:
    """A destination for events. Subclass and pass it as `Target.sink(...)`."""

    policy: SinkPolicy = SinkPolicy()

    def event(self, event: Event) -> None:
        raise NotImplementedError

    def refresh(self) -> None:
        """Called on every turn of the background loop."""

    def flush(self, deadline: float) -> None:
        """Write out what is buffered; `deadline` is a `time.monotonic()` not to pass."""

    def close(self, deadline: float) -> None:
        self.flush(deadline)


class JsonLinesSink(Sink):
    """One whole event per line, written with one `write` of the line and its newline."""

    def __init__(self, out: IO[Any], binary: bool) -> None:
        self._out = out
        self._binary = binary

    def event(self, event: Event) -> None:
        line = event.line() + "\n"
        self._out.write(line.encode("utf-8") if self._binary else line)

    def flush(self, deadline: float) -> None:
        self._out.flush()

    @staticmethod
    def stderr() -> JsonLinesSink:
        return JsonLinesSink(sys.stderr, binary=False)

    @staticmethod
    def path(path: str) -> JsonLinesSink:
        return JsonLinesSink(open(path, "ab"), binary=True)  # noqa: SIM115 - the sink owns it

    @staticmethod
    def fd(fd: int) -> JsonLinesSink:
        try:
            out = os.fdopen(os.dup(fd), "ab")
        except OSError as e:
            raise ValueError(f"file descriptor {fd} is not open for writing: {e}") from None
        return JsonLinesSink(out, binary=True)


class MemorySink(Sink):
    """Keeps every event, as the dict of its JSON line, for tests (`Target.memory`)."""

    def __init__(self, policy: SinkPolicy = EVERY_TICK) -> None:
        self.policy = policy
        self._lock = threading.Lock()
        self._lines: list[Any] = []

    def event(self, event: Event) -> None:
        line = event.line()
        with self._lock:
            self._lines.append(line)

    @property
    def lines(self) -> list[Any]:
        """The JSON lines, as written."""
        with self._lock:
            return list(self._lines)

    @property
    def events(self) -> list[Any]:
        """The events, parsed."""
        return [json.loads(line) for line in self.lines]

    def of_type(self, event: str) -> list[Any]:
        return [e for e in self.events if e["event"] == event]


class CallbackSink(Sink):
    def __init__(self, fn: Callable[[Event], None], policy: SinkPolicy = EVERY_TICK) -> None:
        self._fn = fn
        self.policy = policy

    def event(self, event: Event) -> None:
        self._fn(event)


class Throttle:
    """What was last sent to one sink for one counter (throttle.rs)."""

    __slots__ = ("done", "total", "weight", "percent", "at", "sent_any")

    def __init__(self) -> None:
        self.sent_any = False
        self.done = 0
        self.total: int | None = None
        self.weight = 0
        self.percent: float | None = None
        self.at = 0.0

    def due(
        self,
        policy: SinkPolicy,
        now: float,
        done: int,
        total: int | None,
        percent: float | None,
        force: bool,
        weight: int = 0,
    ) -> bool:
        if not self.sent_any:
            return True
        # Weight alone (a download's bytes before its file is done) is news too, sent
        # at most every `max_interval` like a count that moves less than `min_percent`.
        if self.done == done and self.total == total and self.weight == weight:
            return False
        if force or policy.every_tick or self.total != total:
            return True
        if percent is not None and self.percent is not None:
            if percent - self.percent >= policy.min_percent:
                return True
            if percent >= 100.0 and self.percent < 100.0:
                return True
        return now - self.at >= policy.max_interval

    def sent(
        self, now: float, done: int, total: int | None, percent: float | None, weight: int = 0
    ) -> None:
        self.sent_any = True
        self.done = done
        self.total = total
        self.weight = weight
        self.percent = percent
        self.at = now
