"""The reporter and its handles: `Progress`, `Run`, `Stage`, `Item`, `ToolCall`,
`LlmCall`, `HeartbeatGuard`, and the background thread that feeds the sinks.

As in the Rust SDK (crates/herald/src/dispatch.rs): the caller's thread only appends to
a bounded queue (a `collections.deque`) and bumps plain integers; one background thread
("herald-progress") drains the queue every 50 ms, samples the stages' counters, throttles
ticks per sink and numbers each sink's events. Nothing the caller does waits on I/O,
except finishing a run, which waits for the sinks up to a deadline (5 s), and not at all
for a hub never reached.
"""

from __future__ import annotations

import asyncio
import atexit
import builtins
import contextlib
import contextvars
import itertools
import os
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any, Callable, TypeVar

from . import _wire
from ._sinks import Event, JsonLinesSink, MemorySink, Sink, Throttle
from ._wire import (
    check_count,
    check_json,
    check_opt_count,
    check_opt_str,
    check_run_id,
    check_str,
    describe_exception,
    format_ts,
    is_milestone,
    now_micros,
    round_percent,
    round_seconds,
)

T = TypeVar("T")

builtins_id = builtins.id  # `id` is a parameter's name here, as in the protocol

#: How often the background loop drains the queue and samples counters (seconds).
INTERVAL = 0.05
#: How long finishing a run (or exiting) waits for the sinks.
FLUSH_DEADLINE = 5.0
#: The error of an item or call still open when its run ends.
LEFT_OPEN = "left unfinished when the run ended"
#: Queued messages above which ticks are refused, and above which milestones are.
TICK_CAPACITY = 1024
MILESTONE_CAPACITY = 65_536

_current_run: contextvars.ContextVar[Run | None] = contextvars.ContextVar(
    "herald_current_run", default=None
)
# Runs open in this process, oldest first: `current_run()` falls back on the newest, for
# threads that did not inherit the context (a tqdm bar in a worker thread).
_open_runs: list[Run] = []
_open_lock = threading.Lock()


def current_run() -> Run | None:
    """The run of the innermost `with progress.run(...)` in this context, else the run
    started last that is still open, else None."""
    current = _current_run.get()
    if current is not None and not current._finished:
        return current
    with _open_lock:
        for run in reversed(_open_runs):
            if not run._finished:
                return run
    return None


# --- targets ---------------------------------------------------------------------------


class Target:
    """Where progress goes. Built with the named constructors, as the Rust SDK's."""

    def __init__(self, kind: str, value: Any = None) -> None:
        self.kind = kind
        self.value = value

    @staticmethod
    def stderr_bars() -> Target:
        """Live bars on stderr."""
        return Target("bars")

    @staticmethod
    def stderr_json() -> Target:
        """JSON Lines on stderr."""
        return Target("stderr_json")

    @staticmethod
    def json_file(path: str | os.PathLike[str]) -> Target:
        """JSON Lines appended to a file, created if missing."""
        try:
            return Target("sink", JsonLinesSink.path(os.fspath(path)))
        except OSError as e:
            raise ValueError(f"cannot open progress file {os.fspath(path)}: {e}") from None

    @staticmethod
    def json_fd(fd: int) -> Target:
        """JSON Lines on an inherited file descriptor."""
        return Target("sink", JsonLinesSink.fd(check_count("fd", fd)))

    @staticmethod
    def json_writer(out: Any) -> Target:
        """JSON Lines to a file object (text or binary)."""
        binary = "b" in getattr(out, "mode", "") or not hasattr(out, "encoding")
        return Target("sink", JsonLinesSink(out, binary=binary))

    @staticmethod
    def hub(url: str, token: str | None = None, run: str | None = None) -> Target:
        """A herald hub at `url`, creating runs with `token` (its admin token; none on an
        open hub); with `run`, the first run reports into that existing run instead,
        whose write token `token` then is (what `herald exec` hands its command)."""
        check_str("url", url)
        rest = url.split("://", 1)
        if len(rest) != 2 or rest[0] not in ("http", "https") or not rest[1]:
            raise ValueError(f"url `{url}` is not an http:// or https:// URL")
        check_opt_str("token", token)
        if run is not None:
            check_run_id("run", run)
        return Target("hub", (url.rstrip("/"), token, run))

    @staticmethod
    def memory(sink: MemorySink | None = None) -> Target:
        """Into a `MemorySink`, for tests: `Target.memory(sink)` then `sink.events`."""
        return Target("sink", sink if sink is not None else MemorySink())

    @staticmethod
    def sink(sink: Sink) -> Target:
        """Into a sink of your own."""
        if not isinstance(sink, Sink):
            raise TypeError(f"sink must be a herald.Sink, not {type(sink).__name__}")
        return Target("sink", sink)

    @staticmethod
    def hidden() -> Target:
        return Target("hidden")

    def __repr__(self) -> str:
        return f"Target({self.kind})"


def _targets_from_env(bars: bool = True) -> list[Any]:
    def var(name: str) -> str | None:
        v = os.environ.get(name)
        return v if v else None

    mode = var("HERALD_PROGRESS") or "auto"
    if mode not in ("auto", "bars", "json", "none"):
        raise ValueError(
            f"HERALD_PROGRESS: invalid progress mode `{mode}`: expected auto, bars, json or none"
        )
    targets = []
    path = var("HERALD_PROGRESS_FILE")
    if path is not None:
        targets.append(Target.json_file(path))
    fd_text = var("HERALD_PROGRESS_FD")
    if fd_text is not None:
        if not fd_text.isdigit():
            raise ValueError(f"HERALD_PROGRESS_FD: `{fd_text}` is not a file descriptor number")
        targets.append(Target.json_fd(int(fd_text)))
    url = var("HERALD_URL")
    if url is not None:
        run = var("HERALD_RUN")
        try:
            targets.append(Target.hub(url, var("HERALD_TOKEN"), run))
        except ValueError as e:
            raise ValueError(f"HERALD_URL: {e}") from None
    explicit = path is not None or fd_text is not None
    try:
        tty = sys.stderr.isatty()
    except (AttributeError, ValueError):
        tty = False
    if mode == "bars" or (mode == "auto" and tty):
        if bars:
            targets.append(Target.stderr_bars())
    elif mode == "json" or (mode == "auto" and not explicit):
        targets.append(Target.stderr_json())
    return targets


# --- the background loop ---------------------------------------------------------------


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
            if not throttle.due(slot.policy, now, done, total, percent, force):
                continue
            throttle.sent(now, done, total, percent)
            if fields is None:
                fields = {
                    "stage": stage._name,
                    "done": done,
                    "total": total,
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


# --- the reporter ----------------------------------------------------------------------

_reporters: weakref.WeakSet[Progress] = weakref.WeakSet()


class Progress:
    """The reporter: owns the sinks and the background thread, and starts runs.

    `Progress.from_env()` reads `HERALD_PROGRESS`, `HERALD_PROGRESS_FILE`,
    `HERALD_PROGRESS_FD`, `HERALD_URL`, `HERALD_TOKEN` and `HERALD_RUN` as the Rust SDK
    does; `Progress([Target...])` takes targets directly.
    """

    def __init__(
        self,
        targets: Iterable[Target] = (),
        *,
        interval: float = INTERVAL,
        flush_deadline: float = FLUSH_DEADLINE,
    ) -> None:
        from ._hub import HubSink
        from ._terminal import TerminalSink

        sinks: list[Any] = []
        self._attach: str | None = None
        # stderr carries bars or JSON Lines: herald's own warnings go there as events only
        self._stderr_taken = False
        self._bars = False
        for target in targets:
            if not isinstance(target, Target):
                raise TypeError(f"targets must hold herald.Target, not {type(target).__name__}")
            if target.kind == "bars":
                sinks.append(TerminalSink(sys.stderr))
                self._stderr_taken = self._bars = True
            elif target.kind == "stderr_json":
                sinks.append(JsonLinesSink.stderr())
                self._stderr_taken = True
            elif target.kind == "hub":
                url, token, attach = target.value
                if attach is not None and self._attach is None:
                    self._attach = attach
                sinks.append(HubSink(url, token, attach, flush_deadline, self))
            elif target.kind == "sink":
                sinks.append(target.value)
        self._loop = _Loop(sinks, interval, flush_deadline)
        self._loop.owner = weakref.ref(self)
        self._loop.start()
        self._runs: dict[str, Any] = {}
        _reporters.add(self)

    @classmethod
    def from_env(cls) -> Progress:
        """Reports as the environment says (see the class's doc). Raises ValueError
        naming the variable for a value it cannot use."""
        return cls(_targets_from_env())

    @classmethod
    def hidden(cls) -> Progress:
        """Reports nowhere; reporting costs next to nothing."""
        return cls(())

    @property
    def stats(self) -> Stats:
        return self._loop.stats

    def run(
        self,
        name: str,
        *,
        id: str | None = None,  # noqa: A002 - as the protocol names it
        parent: Run | str | None = None,
        total_steps: int | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Run:
        """Starts a run (`run.started`). Use it as a context manager: an exception
        fails it (naming the exception, which still propagates), a normal exit
        finishes it `succeeded`."""
        check_str("name", name, empty=True)
        if id is not None:
            check_run_id("id", id)
        if isinstance(parent, Run):
            parent_id: str | None = parent.id
        elif parent is None:
            parent_id = None
        else:
            parent_id = check_run_id("parent", parent)
        check_opt_count("total_steps", total_steps)
        if meta is not None:
            if not isinstance(meta, dict):
                raise TypeError(f"meta must be a dict, not {type(meta).__name__}")
            check_json("meta", meta)
        if id is None and parent_id is None and self._attach is not None:
            id, self._attach = self._attach, None
        if id is None:
            id = _generate_run_id(name)
        return Run(self, id, name, parent_id, total_steps, meta)

    def println(self, line: str) -> None:
        """Prints `line` on stderr without tearing the bars: above them, which are drawn
        again below it (tqdm's `tqdm.write`, indicatif's `println`). A `print` to stderr
        while bars are drawn would be erased by their next redraw. Without bars the line
        goes to stderr as it is."""
        check_str("line", line, empty=True)
        if self._bars:
            self._loop.push((6, line))
            self._loop.wake.set()
        else:
            with contextlib.suppress(Exception):
                sys.stderr.write(line + "\n")
                sys.stderr.flush()

    def flush(self, timeout: float = FLUSH_DEADLINE) -> bool:
        """Waits (up to `timeout` seconds) until every event reported so far has
        reached the sinks. True if it did."""
        return self._loop.wait_for(4, timeout)

    async def flush_async(self, timeout: float = FLUSH_DEADLINE) -> bool:
        """`flush` for async code: the wait happens on a worker thread."""
        return await _to_thread(self.flush, timeout)

    def close(self, timeout: float = FLUSH_DEADLINE) -> None:
        """Finishes open runs (`failed`: the program ended with them open), delivers
        what is queued and closes the sinks, waiting at most `timeout`. Called at exit."""
        if self._loop.closed:
            return
        for run in list(self._runs.values()):
            if not run._finished:
                run._end("failed", None, "the program exited with the run open", wait=False)
        self._loop.wait_for(5, timeout)

    def _cancel_requested(self, run_id: str, reason: str | None = None) -> None:
        run = self._runs.get(run_id)
        if run is not None:
            run._cancel = True

    def _notice(self, run_id: str, message: str) -> None:
        """herald's own warnings: a `log` at `warn` of the run, where progress goes."""
        run = self._runs.get(run_id)
        if run is not None and not run._finished:
            self._loop.push_event(run._core, "log", {"level": "warn", "message": message})
        elif not self._stderr_taken:
            # No run to carry it, and nothing of herald's on stderr to tear.
            with contextlib.suppress(Exception):
                sys.stderr.write(message + "\n")


@atexit.register
def _close_all() -> None:
    for reporter in list(_reporters):
        with contextlib.suppress(Exception):
            reporter.close()


_run_counter = itertools.count()


def _generate_run_id(name: str) -> str:
    slug = []
    for c in name:
        if c.isascii() and c.isalnum():
            slug.append(c.lower())
        elif not slug or slug[-1] != "-":
            slug.append("-")
    text = "".join(slug)[:40].strip("-")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    rand = (int.from_bytes(os.urandom(4), "big") ^ next(_run_counter)) & 0xFFFFFFFF
    return f"{text or 'run'}-{stamp}-{rand:08x}"


async def _to_thread(fn: Callable[..., T], *args: Any) -> T:
    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    return await loop.run_in_executor(None, lambda: ctx.run(fn, *args))


# --- handles ---------------------------------------------------------------------------


class _Guard:
    """Context-manager plumbing shared by the handles: an exception ends the handle as
    failed, naming it, and propagates; a normal exit ends it as succeeded."""

    _finished: bool

    def _exit_ok(self) -> None:
        raise NotImplementedError

    def _exit_error(self, error: str) -> None:
        raise NotImplementedError

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._finished:
            return
        if exc is None:
            self._exit_ok()
        else:
            self._exit_error(describe_exception(exc))

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)


class Run(_Guard):
    """A run: what a program reports into. Created by `Progress.run`."""

    def __init__(
        self,
        progress: Progress,
        id: str,  # noqa: A002
        name: str,
        parent: str | None,
        total_steps: int | None,
        meta: dict[str, Any] | None,
    ) -> None:
        self._progress = progress
        self._loop = progress._loop
        self._core = _RunCore(id, parent, self)
        self._name = name
        self._finished = False
        self._cancel = False
        self._token: contextvars.Token[Run | None] | None = None
        self._stages: dict[str, Any] = {}
        # Items, tool calls and model calls not ended yet, ended `failed` with the run.
        self._open: dict[int, Any] = {}
        self._calls = itertools.count(1)
        self._lock = threading.Lock()
        progress._runs[id] = self
        with _open_lock:
            _open_runs.append(self)
        self._emit("run.started", {"name": name, "total_steps": total_steps, "meta": meta})

    # context manager
    def __enter__(self) -> Run:
        self._token = _current_run.set(self)
        return self

    async def __aenter__(self) -> Run:
        return self.__enter__()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if not self._finished:
                if exc is None:
                    self.finish()
                elif isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)):
                    self._end("cancelled", None, describe_exception(exc) or "interrupted")
                else:
                    self.fail(describe_exception(exc))
        finally:
            self._reset_current()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if not self._finished:
                if exc is None:
                    status, error = "succeeded", None
                elif isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)):
                    status, error = "cancelled", describe_exception(exc)
                else:
                    status, error = "failed", describe_exception(exc)
                self._end(status, None, error, wait=False)
                await self._progress.flush_async(self._loop.flush_deadline)
        finally:
            self._reset_current()

    def _reset_current(self) -> None:
        if self._token is not None:
            with contextlib.suppress(ValueError):  # exited in another context
                _current_run.reset(self._token)
            self._token = None

    def __repr__(self) -> str:
        return f"Run({self.id!r})"

    # identity
    @property
    def id(self) -> str:
        return self._core.id

    @property
    def name(self) -> str:
        return self._name

    @property
    def parent(self) -> str | None:
        return self._core.parent

    @property
    def progress(self) -> Progress:
        return self._progress

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def cancelled(self) -> bool:
        """Someone asked this run to stop (a hub's append reply said so). Advisory: the
        program decides how to stop, usually with `finish_cancelled`."""
        return self._cancel

    cancel_requested = cancelled

    def _emit(self, event: str, fields: dict[str, Any]) -> None:
        if not self._finished or event == "run.finished":
            self._loop.push_event(self._core, event, fields)

    # structure
    def stage(self, name: str, *, total: int | None = None, unit: str | None = None) -> Stage:
        """Starts a stage (`stage.started`); a context manager."""
        check_str("name", name)
        check_opt_count("total", total)
        check_opt_str("unit", unit)
        return Stage(self, name, total, unit)

    def item(self, id: str, *, stage: str | None = None, label: str | None = None) -> Item:  # noqa: A002
        """Starts an item (`item.started`); a context manager."""
        check_str("id", id)
        check_opt_str("stage", stage)
        check_opt_str("label", label)
        return Item(self, id, stage, label)

    def child(self, name: str, **kwargs: Any) -> Run:
        """A sub-run whose parent is this run."""
        return self._progress.run(name, parent=self, **kwargs)

    # logs and heartbeats
    def log(self, level: str, message: str) -> None:
        if level not in ("debug", "info", "warn", "error"):
            raise ValueError(f"level must be debug, info, warn or error, not {level!r}")
        check_str("message", message, empty=True)
        self._emit("log", {"level": level, "message": message})

    def debug(self, message: str) -> None:
        self.log("debug", message)

    def info(self, message: str) -> None:
        self.log("info", message)

    def warn(self, message: str) -> None:
        self.log("warn", message)

    warning = warn

    def error(self, message: str) -> None:
        self.log("error", message)

    def beat(self, note: str | None = None) -> None:
        """Sends one `heartbeat` now."""
        check_opt_str("note", note)
        self._emit(
            "heartbeat",
            {"elapsed_s": round_seconds(time.monotonic() - self._core.started), "note": note},
        )

    def heartbeat(self, every: float = 10.0, note: str | None = None) -> HeartbeatGuard:
        """While the guard is open (`with run.heartbeat(every=10):`), a `heartbeat` goes
        out whenever the run has been silent for `every` seconds, from the background
        thread: for a long silent call."""
        _wire.check_seconds("every", every)
        check_opt_str("note", note)
        return HeartbeatGuard(self, float(every), note)

    # agents
    def iteration(self, iteration: int) -> None:
        check_count("iteration", iteration)
        if iteration == 0:
            raise ValueError("iteration counts from 1")
        self._emit("agent.iteration", {"iteration": iteration})

    def history(self, messages: list[Any]) -> None:
        if not isinstance(messages, list):
            raise TypeError(f"messages must be a list, not {type(messages).__name__}")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise ValueError(f"messages[{i}] must be a dict with `role` and `content`")
            check_str(f"messages[{i}].role", m["role"], empty=True)
        check_json("messages", messages)
        self._emit(
            "agent.history",
            {"messages": [{"role": m["role"], "content": m["content"]} for m in messages]},
        )

    def system_message(self, message: str) -> None:
        check_str("message", message, empty=True)
        self._emit("agent.system_message", {"message": message})

    def text(self, text: str) -> None:
        """Streamed text not tied to a model call (`text.delta`)."""
        check_str("text", text, empty=True)
        self._emit("text.delta", {"text": text})

    def llm(
        self,
        model: str | None = None,
        *,
        provider: str | None = None,
        call_id: str | None = None,
    ) -> LlmCall:
        """Starts a model call (`llm.request`); a context manager."""
        check_opt_str("model", model)
        check_opt_str("provider", provider)
        if call_id is None:
            call_id = f"llm-{next(self._calls)}"
        check_str("call_id", call_id)
        return LlmCall(self, call_id, model, provider)

    def tool_selected(
        self,
        tool: str,
        input: Any = None,
        *,
        call_id: str | None = None,  # noqa: A002
    ) -> str:
        """The model chose a tool (`tool.selected`); returns the call id to start it
        with (`run.tool(..., call_id=...)`)."""
        check_str("tool", tool)
        check_json("input", input)
        if call_id is None:
            call_id = f"tool-{next(self._calls)}"
        check_str("call_id", call_id)
        self._emit("tool.selected", {"call_id": call_id, "tool": tool, "input": input})
        return call_id

    def tool(
        self,
        name: str,
        input: Any = None,  # noqa: A002
        *,
        feedback: str | None = None,
        call_id: str | None = None,
    ) -> ToolCall:
        """Starts a tool call (`tool.started`); a context manager."""
        check_str("name", name)
        check_json("input", input)
        check_opt_str("feedback", feedback)
        if call_id is None:
            call_id = f"tool-{next(self._calls)}"
        check_str("call_id", call_id)
        return ToolCall(self, call_id, name, input, feedback)

    def preparing_response(self) -> None:
        """Every tool is done; the final answer is being written."""
        self._emit("agent.preparing_response", {})

    def response(self, text: str, iteration: int | None = None) -> None:
        check_str("text", text, empty=True)
        check_opt_count("iteration", iteration)
        self._emit("agent.response", {"text": text, "iteration": iteration})

    def custom(self, name: str, fields: dict[str, Any] | None = None, **more: Any) -> None:
        """A custom event `custom.<name>` with any JSON fields."""
        _wire.check_custom_name(name)
        body = dict(fields or {})
        body.update(more)
        for key in body:
            check_str("field name", key)
            if key in ("v", "event", "run", "seq", "ts", "id", "parent"):
                raise ValueError(f"field `{key}` is the envelope's, not a custom field")
        check_json("fields", body)
        self._emit("custom." + name, body)

    # the end
    def finish(self, result: Any = None) -> None:
        """Finishes the run `succeeded` with an optional JSON `result`, and waits (up to
        the flush deadline) for the sinks to have it."""
        check_json("result", result)
        self._end("succeeded", result, None)

    def fail(self, error: str | BaseException) -> None:
        self._end("failed", None, _error_text("error", error))

    def finish_cancelled(self, reason: str | None = None) -> None:
        """Finishes the run `cancelled` (after a cancel request, or a program's own stop)."""
        check_opt_str("reason", reason)
        self._end("cancelled", None, reason)

    async def finish_async(self, result: Any = None) -> None:
        """`finish` without holding the event loop: the wait is on a worker thread."""
        check_json("result", result)
        self._end("succeeded", result, None, wait=False)
        await self._progress.flush_async(self._loop.flush_deadline)

    async def fail_async(self, error: str | BaseException) -> None:
        self._end("failed", None, _error_text("error", error), wait=False)
        await self._progress.flush_async(self._loop.flush_deadline)

    def _end(self, status: str, result: Any, error: str | None, wait: bool = True) -> None:
        with self._lock:
            if self._finished:
                return
            for handle in list(self._open.values()):
                handle._exit_error(LEFT_OPEN)
            stages = [s for s in self._stages.values() if not s._finished]
            for stage in reversed(stages):
                if status == "succeeded":
                    stage._end("succeeded", None)
                else:
                    stage._end("failed", error or f"the run {status}")
            self._emit("run.finished", {"status": status, "result": result, "error": error})
            self._finished = True
        with _open_lock:
            if self in _open_runs:
                _open_runs.remove(self)
        self._progress._runs.pop(self.id, None)
        if wait:
            self._progress.flush(self._loop.flush_deadline)


def _error_text(name: str, error: Any) -> str:
    if isinstance(error, BaseException):
        return describe_exception(error)
    return check_str(name, error, empty=True)


class HeartbeatGuard:
    """Keeps heartbeats going while open. Created by `Run.heartbeat`."""

    def __init__(self, run: Run, every: float, note: str | None) -> None:
        self._run = run
        self._key = (every, note)
        self._open = True
        run._loop.push((3, run._core, every, note, True))

    def close(self) -> None:
        if self._open:
            self._open = False
            self._run._loop.push((3, self._run._core, self._key[0], self._key[1], False))

    def __enter__(self) -> HeartbeatGuard:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> HeartbeatGuard:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()


class Stage(_Guard):
    """A stage of a run: a counter and its items. Created by `Run.stage`.

    `inc(n)` is a plain integer add on the caller's thread; the background thread
    samples it a few times a second. Counting one stage from several threads at once
    may lose counts where the interpreter switches threads inside `+=`.
    """

    def __init__(self, run: Run, name: str, total: int | None, unit: str | None) -> None:
        if name in run._stages and not run._stages[name]._finished:
            raise ValueError(f"name: stage `{name}` is already running in this run")
        self._run = run
        self._name = name
        self._key = (run.id, name, id(self))
        self._done = 0
        self._total = total
        self._started_total = total
        self._unit = unit
        self._message: str | None = None
        self._started = time.monotonic()
        self._finished = False
        self._finishing = False
        self._lock = threading.Lock()
        # stage.iter: the number of the element in hand (the generator stores it, nothing
        # else; after the loop, how many it took), whether the loop was left early, and
        # the items reported so far
        self._iter_active = False
        self._iter_taken = 0
        self._iter_early = False
        self._items_started = 0
        self._items_finished = 0
        run._stages[name] = self
        run._emit("stage.started", {"stage": name, "total": total, "unit": unit})
        run._loop.push((1, self))

    def __enter__(self) -> Stage:
        return self

    async def __aenter__(self) -> Stage:
        return self

    def __repr__(self) -> str:
        return f"Stage({self._name!r}, done={self._done}, total={self._total})"

    @property
    def name(self) -> str:
        return self._name

    @property
    def position(self) -> int:
        return self._count()

    @property
    def total(self) -> int | None:
        return self._total

    def inc(self, n: int = 1, _one: int = 1) -> None:
        """Counts `n` more units done."""
        # The hot path: `n is _one` (small ints are shared) skips the checks for inc(1),
        # without the warning a literal after `is` draws.
        if n is not _one and (n.__class__ is not int or n < 0):
            check_count("n", n)
        self._done += n

    def set(self, done: int) -> None:
        """Sets the count."""
        self._done = check_count("done", done)

    def set_total(self, total: int) -> None:
        """Sets (or grows) the total."""
        self._total = check_count("total", total)

    def set_message(self, message: str | None) -> None:
        """What the stage is doing now; rides its `progress` ticks."""
        self._message = check_opt_str("message", message)

    def item(self, id: str, label: str | None = None) -> Item:  # noqa: A002
        check_str("id", id)
        check_opt_str("label", label)
        return Item(self._run, id, self._name, label)

    def iter(self, iterable: Iterable[T]) -> Iterator[T]:
        """Yields each element of `iterable`, counting it as one unit and reporting it as
        one item, as the Rust SDK's `Stage::iter`: ids `1`, `2`, ... in order, each
        started when the loop takes it and succeeded when the loop takes the next one or
        ends. An exception in the loop's body fails the item in hand, then the stage
        (through `with`), naming it; `break` is not a failure. The loop only stores the
        element's number; the background thread turns the numbers into the items'
        events, in order, so an item's `ts` is when that thread saw it. Takes the total
        from `len(iterable)` when it has one and none was set."""
        if self._total is None:
            with contextlib.suppress(TypeError):
                self._total = len(iterable)  # type: ignore[arg-type]
        return self._iter(iterable)

    def _iter(self, iterable: Iterable[T]) -> Iterator[T]:
        with self._lock:
            self._fold_iter(None)  # the items of a loop before this one, settled
            self._items_started = self._items_finished = 0
            self._iter_taken = 0
            self._iter_early = False
            self._iter_active = True
        exhausted = False
        try:
            # The hot path: one attribute store per element.
            for self._iter_taken, x in enumerate(iterable, 1):
                yield x
            exhausted = True
        finally:
            with self._lock:
                if self._iter_active:
                    self._leave_iter(exhausted)

    def _leave_iter(self, exhausted: bool) -> None:
        """Under the lock: the loop ended (`exhausted`) or was left with its element in
        hand, which is not counted done and whose item waits for the stage's end."""
        taken = self._iter_taken
        self._iter_active = False
        self._done += taken if exhausted else max(taken - 1, 0)
        self._iter_early = not exhausted and taken > 0

    def _count(self) -> int:
        if self._iter_active:
            return self._done + max(self._iter_taken - 1, 0)
        return self._done

    # the sampler's side (on the background thread)
    def _sample(self) -> tuple[Any, ...]:
        return self._count(), self._total

    def _sample_items(self, loop: _Loop, final: bool) -> None:
        if (
            not self._iter_active
            and self._items_finished == self._iter_taken
            and (not self._iter_early or not final)
        ):
            return
        run = self._run._core
        micros = now_micros()

        def out(event: str, fields: dict[str, Any]) -> None:
            loop._deliver(run, event, micros, fields)

        with self._lock:
            self._fold_iter(out, final)

    def _fold_iter(
        self, out: Callable[[str, dict[str, Any]], None] | None, final: bool = True
    ) -> None:
        """Under the lock: reports the items of `iter` up to where the loop is, through
        `out` (None: through the queue, on the caller's thread)."""
        emit = out if out is not None else self._run._emit
        k = self._iter_taken
        if self._iter_active:
            self._expand_items(emit, k, k - 1)
        elif self._iter_early:
            # Left early: the item in hand waits for the stage's end to know its status.
            self._expand_items(emit, k, k if final else k - 1)
            self._iter_early = not final
        else:
            self._expand_items(emit, k, k)

    def _expand_items(
        self, emit: Callable[[str, dict[str, Any]], None], start_to: int, finish_to: int
    ) -> None:
        name = self._name
        started, finished = self._items_started, self._items_finished
        while finished < finish_to:
            finished += 1
            item = str(finished)
            if finished > started:
                started = finished
                emit("item.started", {"item": item, "stage": name})
            emit("item.finished", {"item": item, "stage": name, "status": "succeeded"})
        while started < start_to:
            started += 1
            emit("item.started", {"item": str(started), "stage": name})
        self._items_started, self._items_finished = started, finished

    # the end
    def finish(self) -> None:
        self._end("succeeded", None)

    def fail(self, error: str | BaseException) -> None:
        self._end("failed", _error_text("error", error))

    def skip(self) -> None:
        self._end("skipped", None)

    def _exit_ok(self) -> None:
        self.finish()

    def _exit_error(self, error: str) -> None:
        self._end("failed", error)

    def _end(self, status: str, error: str | None) -> None:
        run = self._run
        with self._lock:
            if self._finished:
                return
            self._finishing = True
            if status == "failed":
                self._fail_item_in_hand(error)
            elif self._iter_active:  # ended inside its loop: the item in hand ends with it
                self._leave_iter(False)
        run._loop.push((2, self))
        run._emit(
            "stage.finished",
            {
                "stage": self._name,
                "status": status,
                "error": error,
                "elapsed_s": round_seconds(time.monotonic() - self._started),
            },
        )
        self._finished = True

    def _fail_item_in_hand(self, error: str | None) -> None:
        """Under the lock: the element `iter` had in hand failed with the stage."""
        k = self._iter_taken
        if not (self._iter_active or self._iter_early) or k == 0:
            return
        emit = self._run._emit
        self._expand_items(emit, k, k - 1)
        emit(
            "item.finished",
            {"item": str(k), "stage": self._name, "status": "failed", "error": error},
        )
        self._items_finished = k
        if self._iter_active:
            self._done += k - 1
        self._iter_active = self._iter_early = False


class Item(_Guard):
    """One unit of work. Created by `Run.item` or `Stage.item`."""

    def __init__(self, run: Run, id: str, stage: str | None, label: str | None) -> None:  # noqa: A002
        self._run = run
        self._id = id
        self._stage = stage
        self._started = time.monotonic()
        self._finished = False
        run._open[builtins_id(self)] = self
        run._emit("item.started", {"item": id, "stage": stage, "label": label})

    def __enter__(self) -> Item:
        return self

    async def __aenter__(self) -> Item:
        return self

    @property
    def id(self) -> str:
        return self._id

    def finish(self) -> None:
        self._end("succeeded", None)

    def fail(self, error: str | BaseException) -> None:
        self._end("failed", _error_text("error", error))

    def skip(self) -> None:
        self._end("skipped", None)

    def _exit_ok(self) -> None:
        self.finish()

    def _exit_error(self, error: str) -> None:
        self._end("failed", error)

    def _end(self, status: str, error: str | None) -> None:
        if self._finished:
            return
        self._finished = True
        self._run._open.pop(builtins_id(self), None)
        self._run._emit(
            "item.finished",
            {
                "item": self._id,
                "stage": self._stage,
                "status": status,
                "error": error,
                "elapsed_s": round_seconds(time.monotonic() - self._started),
            },
        )


class ToolCall(_Guard):
    """A tool call. Created by `Run.tool`. Set `call.output` (or pass it to `finish`)
    for what it returned."""

    def __init__(
        self,
        run: Run,
        call_id: str,
        tool: str,
        input: Any,  # noqa: A002
        feedback: str | None,
    ) -> None:
        self._run = run
        self._call_id = call_id
        self._tool = tool
        self._started = time.monotonic()
        self._finished = False
        self._done = 0
        self._total: int | None = None
        self._unit: str | None = None
        self._message: str | None = None
        self._sent: tuple[Any, ...] | None = None
        self.output: Any = None
        run._open[builtins_id(self)] = self
        run._emit(
            "tool.started",
            {"call_id": call_id, "tool": tool, "input": input, "feedback": feedback},
        )

    def __enter__(self) -> ToolCall:
        return self

    async def __aenter__(self) -> ToolCall:
        return self

    @property
    def call_id(self) -> str:
        return self._call_id

    def feedback(self, feedback: str) -> None:
        """A new message for people while it runs ("Reading page 2 of 5")."""
        check_str("feedback", feedback, empty=True)
        if not self._finished:
            self._run._emit(
                "tool.started",
                {"call_id": self._call_id, "tool": self._tool, "feedback": feedback},
            )

    def progress(self, done: int, total: int | None = None, unit: str | None = None) -> None:
        """The call's own count (`progress` with its `call_id`); sent when it moved a
        percentage point of its total, or its total changed."""
        self._done = check_count("done", done)
        if total is not None:
            self._total = check_count("total", total)
        if unit is not None:
            self._unit = check_str("unit", unit)
        self._send_progress(False)

    def inc(self, n: int = 1) -> None:
        self.progress(self._done + check_count("n", n))

    def message(self, message: str) -> None:
        self._message = check_str("message", message, empty=True)
        self._send_progress(True)

    def _send_progress(self, force: bool) -> None:
        if self._finished:
            return
        done, total = self._done, self._total
        step = max((total if total is not None else done) / 100.0, 1.0)
        sent = self._sent
        if not force and sent is not None and sent[1] == total and done - sent[0] < step:
            return
        self._sent = (done, total)
        percent = None
        if total is not None:
            percent = round_percent(100.0 if total == 0 else min(done / total * 100.0, 100.0))
        self._run._emit(
            "progress",
            {
                "call_id": self._call_id,
                "done": done,
                "total": total,
                "unit": self._unit,
                "message": self._message,
                "percent": percent,
                "elapsed_s": round_seconds(time.monotonic() - self._started),
            },
        )

    def finish(self, output: Any = None) -> None:
        check_json("output", output)
        self._end("succeeded", output, None)

    def fail(self, error: str | BaseException) -> None:
        self._end("failed", None, _error_text("error", error))

    def _exit_ok(self) -> None:
        self.finish(self.output)

    def _exit_error(self, error: str) -> None:
        self._end("failed", None, error)

    def _end(self, status: str, output: Any, error: str | None) -> None:
        if self._finished:
            return
        if self._sent is not None and self._sent != (self._done, self._total):
            self._send_progress(True)
        self._finished = True
        self._run._open.pop(builtins_id(self), None)
        self._run._emit(
            "tool.finished",
            {
                "call_id": self._call_id,
                "tool": self._tool,
                "status": status,
                "output": output,
                "error": error,
                "elapsed_s": round_seconds(time.monotonic() - self._started),
            },
        )


class LlmCall(_Guard):
    """A model call. Created by `Run.llm`: `llm.request` at once, `text.delta` per
    `text(...)`, `llm.response` when it ends (on leaving `with`, or `finish`/`fail`)."""

    def __init__(self, run: Run, call_id: str, model: str | None, provider: str | None) -> None:
        self._run = run
        self._call_id = call_id
        self._started = time.monotonic()
        self._first: float | None = None
        self._finished = False
        self.model: str | None = None
        self.stop_reason: str | None = None
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        run._open[builtins_id(self)] = self
        run._emit("llm.request", {"call_id": call_id, "provider": provider, "model": model})

    def __enter__(self) -> LlmCall:
        return self

    async def __aenter__(self) -> LlmCall:
        return self

    @property
    def call_id(self) -> str:
        return self._call_id

    @property
    def run(self) -> Run:
        return self._run

    def text(self, delta: str) -> None:
        """Streamed text of this call (`text.delta`); the first marks the time to first
        token."""
        if delta.__class__ is not str:
            check_str("delta", delta, empty=True)
        if self._first is None:
            self._first = time.monotonic()
        if not self._finished:
            self._run._emit("text.delta", {"text": delta, "call_id": self._call_id})

    def first_token(self) -> None:
        """Marks the first token now, when it is not text (thinking, a tool's input)."""
        if self._first is None:
            self._first = time.monotonic()

    def usage(self, input_tokens: int | None = None, output_tokens: int | None = None) -> None:
        """Sets the token counts reported with `llm.response` (each given replaces)."""
        if input_tokens is not None:
            self.input_tokens = check_count("input_tokens", input_tokens)
        if output_tokens is not None:
            self.output_tokens = check_count("output_tokens", output_tokens)

    def set_model(self, model: str) -> None:
        """The model that answered, as the provider names it."""
        self.model = check_str("model", model)

    def set_stop_reason(self, stop_reason: str) -> None:
        self.stop_reason = check_str("stop_reason", stop_reason)

    def finish(
        self,
        stop_reason: str | None = None,
        *,
        model: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
    ) -> None:
        """Ends the call (`llm.response`)."""
        if stop_reason is not None:
            self.set_stop_reason(stop_reason)
        if model is not None:
            self.set_model(model)
        self.usage(input_tokens, output_tokens)
        self._end(self.stop_reason, None)

    def fail(
        self,
        error: str | BaseException,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
    ) -> None:
        """Ends the call as failed: stop reason `error` and what went wrong (the
        provider's error type and message), which becomes the run's last error."""
        text = _error_text("error", error)
        self.usage(input_tokens, output_tokens)
        self._end("error", text)

    def _exit_ok(self) -> None:
        self._end(self.stop_reason, None)

    def _exit_error(self, error: str) -> None:
        self._end("error", error)

    def _end(self, stop_reason: str | None, error: str | None) -> None:
        if self._finished:
            return
        self._finished = True
        self._run._open.pop(builtins_id(self), None)
        now = time.monotonic()
        self._run._emit(
            "llm.response",
            {
                "call_id": self._call_id,
                "model": self.model,
                "stop_reason": stop_reason,
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
                "ttft_s": None
                if self._first is None
                else round_seconds(self._first - self._started),
                "elapsed_s": round_seconds(now - self._started),
                "error": error,
            },
        )
