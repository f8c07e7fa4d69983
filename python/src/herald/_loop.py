"""The background thread ("herald-progress") that feeds the sinks.

As in the Rust SDK (crates/herald/src/dispatch.rs): the caller's thread only appends to
a bounded queue (a `collections.deque`) and bumps plain integers; this thread drains the
queue every 50 ms, samples the stages' counters (and turns `stage.iter`'s element
numbers into item events), throttles ticks per sink and numbers each sink's events.
Nothing the caller does waits on I/O, except finishing a run, which waits for the sinks
up to a deadline (5 s), and not at all for a hub never reached.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

from ._sinks import Event, Sink, Throttle
from ._wire import (
    format_ts,
    is_milestone,
    now_micros,
    round_percent,
    round_seconds,
)

if TYPE_CHECKING:
    from ._run import Run
    from ._stage import Stage


#: How often the background loop drains the queue and samples counters (seconds).
INTERVAL = 0.05
#: How long finishing a run (or exiting) waits for the sinks.
FLUSH_DEADLINE = 5.0
#: Queued messages above which ticks are refused, and above which milestones are.
TICK_CAPACITY = 1024
MILESTONE_CAPACITY = 65_536


class _Slot:
    """One sink and what the loop keeps for it."""

    __slots__ = ("sink", "policy", "seqs", "throttles", "last_sent", "disabled")

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.policy = sink.policy
        self.seqs: dict[str, Any] = {}
        self.throttles: dict[tuple[str, str, int], Throttle] = {}
        self.last_sent: dict[str, Any] = {}
        self.disabled = False


class _RunCore:
    """What the loop knows of a run."""

    __slots__ = ("id", "parent", "started", "heartbeats", "last_event", "open", "handle")

    def __init__(self, id: str, parent: str | None, handle: Run) -> None:  # noqa: A002
        self.id = id
        self.parent = parent
        self.started = time.monotonic()
        self.heartbeats: list[Any] = []
        self.last_event = self.started
        self.open = True
        self.handle = weakref.ref(handle)


class Stats:
    """What reporting lost or refused (`Progress.stats`)."""

    def __init__(self) -> None:
        self.dropped_ticks = 0
        self.dropped_milestones = 0
        self.sink_errors = 0
        self.hub_dropped_ticks = 0
        self.hub_dropped_milestones = 0

    def __repr__(self) -> str:
        return f"Stats({self.__dict__})"


class _Loop:
    def __init__(self, sinks: list[Any], interval: float, flush_deadline: float) -> None:
        self.slots = [_Slot(s) for s in sinks]
        self.enabled = bool(self.slots)
        self.queue: deque[Any] = deque()
        self.wake = threading.Event()
        self.interval = interval
        self.flush_deadline = flush_deadline
        self.stats = Stats()
        self.stages: list[Any] = []
        self.runs: dict[str, Any] = {}
        self.last_ts = 0
        self.closed = False
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()
        self.owner: Callable[[], Any] = lambda: True

    def start(self) -> None:
        if self.enabled:
            self.thread = threading.Thread(target=self._main, name="herald-progress", daemon=True)
            self.thread.start()

    # caller side -----------------------------------------------------------------

    def push_event(self, run: _RunCore, event: str, fields: dict[str, Any]) -> None:
        if not self.enabled:
            return
        queue = self.queue
        n = len(queue)
        if n >= TICK_CAPACITY and (n >= MILESTONE_CAPACITY or not is_milestone(event, fields)):
            if is_milestone(event, fields):
                self.stats.dropped_milestones += 1
            else:
                self.stats.dropped_ticks += 1
            return
        queue.append((0, run, event, now_micros(), fields))

    def push(self, msg: tuple[Any, ...]) -> None:
        if self.enabled:
            self.queue.append(msg)

    def wait_for(self, kind: int, timeout: float) -> bool:
        """Queues a marker of `kind` and waits until the loop passed it (or `timeout`)."""
        if self.thread is None or not self.thread.is_alive():
            return True
        done = threading.Event()
        self.queue.append((kind, done, time.monotonic() + timeout))
        self.wake.set()
        return done.wait(timeout + 0.5)

    # loop side ---------------------------------------------------------------------

    def _main(self) -> None:
        while not self.closed:
            self.wake.wait(self.interval)
            self.wake.clear()
            try:
                self._turn()
                if self.owner() is None and not self.queue and not self.closed:
                    # The reporter and every run of it are gone: nothing more can come.
                    self.queue.append((5, threading.Event(), time.monotonic()))
            except Exception as e:  # never let the loop die: say it once, go on
                self._internal_error(e)

    def _internal_error(self, e: Exception) -> None:
        self.stats.sink_errors += 1
        with contextlib.suppress(Exception):
            sys.stderr.write(f"herald: internal error in the reporting loop: {e!r}\n")

    def _turn(self) -> None:
        queue = self.queue
        wrote = False
        while queue:
            msg = queue.popleft()
            kind = msg[0]
            if kind == 0:
                self._deliver(msg[1], msg[2], msg[3], msg[4])
                wrote = True
            elif kind == 1:  # track a stage
                self.stages.append(msg[1])
            elif kind == 2:  # a stage's last count, before its stage.finished
                self._sample(msg[1], time.monotonic(), force=True)
            elif kind == 3:  # heartbeat guard on/off
                run, interval, note, on = msg[1], msg[2], msg[3], msg[4]
                if on:
                    run.heartbeats.append((interval, note))
                elif (interval, note) in run.heartbeats:
                    run.heartbeats.remove((interval, note))
            elif kind == 4:  # flush
                self._sample_all(time.monotonic())
                self._flush_sinks(msg[2])
                msg[1].set()
                wrote = False
            elif kind == 5:  # close
                self._sample_all(time.monotonic())
                for slot in self.slots:
                    if not slot.disabled:
                        try:
                            slot.sink.close(msg[2])
                        except Exception:
                            self.stats.sink_errors += 1
                            slot.disabled = True
                self.closed = True
                self.enabled = False  # what is reported after this goes nowhere
                self.queue.clear()
                msg[1].set()
                return
            elif kind == 7:  # items a stage queued from its own thread are out
                with msg[1]._lock:
                    msg[1]._settling -= 1
            elif kind == 6:  # a line of the program's, above the bars
                for slot in self.slots:
                    if not slot.disabled and hasattr(slot.sink, "println"):
                        slot.sink.println(msg[1])
        now = time.monotonic()
        self._sample_all(now)
        self._beat(now)
        for slot in self.slots:
            if not slot.disabled:
                try:
                    slot.sink.refresh()
                except Exception:
                    self._disable(slot)
        if wrote:
            self._flush_sinks(now + self.flush_deadline, wait=False)

    def _flush_sinks(self, deadline: float, wait: bool = True) -> None:
        for slot in self.slots:
            if not slot.disabled:
                try:
                    slot.sink.flush(deadline if wait else 0.0)
                except Exception:
                    self._disable(slot)

    def _disable(self, slot: _Slot) -> None:
        slot.disabled = True
        self.stats.sink_errors += 1

    def _stamp(self, micros: int) -> str:
        # `ts` never goes back within a stream.
        if micros < self.last_ts:
            micros = self.last_ts
        self.last_ts = micros
        return format_ts(micros)

    def _deliver(
        self,
        run: _RunCore,
        event: str,
        micros: int,
        fields: dict[str, Any],
        only: _Slot | None = None,
    ) -> None:
        ts = self._stamp(micros)
        now = time.monotonic()
        run.last_event = now
        if event == "run.started":
            self.runs[run.id] = run
        for slot in self.slots if only is None else (only,):
            if slot.disabled:
                continue
            seq = slot.seqs.get(run.id, 0) + 1
            slot.seqs[run.id] = seq
            slot.last_sent[run.id] = now
            try:
                slot.sink.event(Event(event, run.id, seq, ts, run.parent, fields))
            except Exception:
                self._disable(slot)
        if event == "run.finished":
            run.open = False
            self.runs.pop(run.id, None)
            for slot in self.slots:
                slot.seqs.pop(run.id, None)
                slot.last_sent.pop(run.id, None)

    def _sample_all(self, now: float) -> None:
        keep = []
        for stage in self.stages:
            # A finished stage had its last count before its `stage.finished`.
            if not stage._finished:
                self._sample(stage, now, force=False)
                keep.append(stage)
        self.stages = keep

    def _sample(self, stage: Stage, now: float, force: bool) -> None:
        run = stage._run._core
        if not run.open:
            return
        stage._sample_items(self, force)
        done, total = stage._sample()
        weight, total_weight = stage._weight, stage._total_weight
        if total is not None:
            percent: float | None = 100.0 if total == 0 else min(done / total * 100.0, 100.0)
        else:
            percent = None
        fields: dict[str, Any] | None = None
        micros = now_micros()
        for slot in self.slots:
            if slot.disabled:
                continue
            throttle = slot.throttles.get(stage._key)
            if throttle is None:
                throttle = slot.throttles[stage._key] = Throttle()
                # The stage's start is its baseline: a first count of 0 says nothing.
                start_total = stage._started_total
                throttle.sent(now, 0, start_total, None if start_total is None else 0.0)
            if not throttle.due(slot.policy, now, done, total, percent, force, weight):
                continue
            throttle.sent(now, done, total, percent, weight)
            if fields is None:
                # As the Rust SDK's: weights only for a stage that weighs something, and
                # a weight done beyond the total raises the total.
                weighed = weight > 0 or total_weight is not None
                fields = {
                    "stage": stage._name,
                    "done": done,
                    "total": total,
                    "done_weight": float(weight) if weighed else None,
                    "total_weight": None
                    if total_weight is None
                    else float(max(total_weight, weight)),
                    "unit": stage._unit,
                    "message": stage._message,
                    "percent": None if percent is None else round_percent(percent),
                    "elapsed_s": round_seconds(now - stage._started),
                }
            self._deliver(run, "progress", micros, fields, only=slot)
        if force and stage._finishing:
            for slot in self.slots:
                slot.throttles.pop(stage._key, None)

    def _beat(self, now: float) -> None:
        for run in list(self.runs.values()):
            if run.heartbeats:
                interval, note = min(run.heartbeats, key=lambda h: h[0])
                if now - run.last_event >= interval:
                    self._deliver(
                        run,
                        "heartbeat",
                        now_micros(),
                        {"elapsed_s": round_seconds(now - run.started), "note": note},
                    )
            for slot in self.slots:
                keepalive = slot.policy.keepalive
                if slot.disabled or keepalive is None:
                    continue
                if now - slot.last_sent.get(run.id, now) >= keepalive:
                    self._deliver(
                        run,
                        "heartbeat",
                        now_micros(),
                        {"elapsed_s": round_seconds(now - run.started)},
                        only=slot,
                    )
