"""Tool calls and model calls."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ._guard import _error_text, _Guard, builtins_id
from ._wire import (
    check_count,
    check_json,
    check_str,
    round_percent,
    round_seconds,
)

if TYPE_CHECKING:
    from ._run import Run


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
