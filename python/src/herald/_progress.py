"""The reporter: `Progress` owns the sinks and the background loop and starts runs; at
exit it finishes what is open and flushes, within a deadline."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import contextvars
import itertools
import os
import sys
import time
import weakref
from collections.abc import Iterable
from typing import Any, Callable, TypeVar

from ._loop import FLUSH_DEADLINE, INTERVAL, Stats, _Loop
from ._run import Run
from ._sinks import JsonLinesSink
from ._targets import Target, _targets_from_env
from ._wire import (
    check_json,
    check_opt_count,
    check_run_id,
    check_seconds,
    check_str,
)

T = TypeVar("T")

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

        check_seconds("interval", interval)
        check_seconds("flush_deadline", flush_deadline, zero=True)
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
        check_seconds("timeout", timeout, zero=True)
        return self._loop.wait_for(4, timeout)

    async def flush_async(self, timeout: float = FLUSH_DEADLINE) -> bool:
        """`flush` for async code: the wait happens on a worker thread."""
        return await _to_thread(self.flush, timeout)

    def close(self, timeout: float = FLUSH_DEADLINE) -> None:
        """Finishes open runs (`failed`: the program ended with them open), delivers
        what is queued and closes the sinks, waiting at most `timeout`. Called at exit."""
        check_seconds("timeout", timeout, zero=True)
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
