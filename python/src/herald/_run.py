"""A run and its heartbeat guard: what a program reports into."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import threading
import time
from typing import TYPE_CHECKING, Any

from . import _wire
from ._calls import LlmCall, ToolCall
from ._context import _current_run, _open_lock, _open_runs
from ._guard import _error_text, _Guard
from ._loop import _RunCore
from ._stage import Item, Stage
from ._wire import (
    check_count,
    check_json,
    check_opt_count,
    check_opt_str,
    check_str,
    describe_exception,
    round_seconds,
)

if TYPE_CHECKING:
    from ._progress import Progress


#: The error of an item or call still open when its run ends.
LEFT_OPEN = "left unfinished when the run ended"


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
    def stage(
        self,
        name: str,
        *,
        total: int | None = None,
        unit: str | None = None,
        total_weight: int | None = None,
    ) -> Stage:
        """Starts a stage (`stage.started`); a context manager. `total_weight` is its
        whole weight (bytes, tokens, rows) when its units are not equal: its ETA is then
        estimated in weight."""
        check_str("name", name)
        check_opt_count("total", total)
        if unit is not None:
            check_str("unit", unit)  # as a tool call's `progress`: an empty unit is refused
        check_opt_count("total_weight", total_weight)
        return Stage(self, name, total, unit, total_weight)

    def item(
        self,
        id: str,  # noqa: A002
        *,
        stage: str | None = None,
        label: str | None = None,
        weight: int | None = None,
    ) -> Item:
        """Starts an item (`item.started`); a context manager. `weight` (its size in
        bytes, tokens, rows) goes with its `item.finished` and, when it names a running
        stage, into that stage's weight done."""
        check_str("id", id)
        check_opt_str("stage", stage)
        check_opt_str("label", label)
        check_opt_count("weight", weight)
        counts_to = None if stage is None else self._stages.get(stage)
        return Item(self, id, stage, label, weight, counts_to=counts_to)

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
