"""Bars on a terminal (stderr): a small renderer of the standard library's.

One line per open run and one per running stage (bar, percent, count, rate, elapsed,
ETA, message), redrawn at most 10 times a second in place; logs at info and above,
failed items, failed tools and finished stages are printed above the bars as they come.
A producer's text reaches the terminal only through `escape_controls`, as in the Rust
SDK (crates/herald/src/terminal/text.rs). What it shows is a display's own bookkeeping of
the events it was given, not a fold: the run state is the hub's and `herald watch`'s.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from typing import IO, Any

from ._sinks import EVERY_TICK, Event, Sink

_ESCAPED = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_controls(text: str) -> str:
    """Shows C0, DEL, C1 and the BiDi overrides and isolates as escapes (`\\x1b`,
    `\\n`, `\\u{202e}`), as the Rust SDK's `escape_controls` does."""

    def one(m: re.Match[str]) -> str:
        c = m.group()
        if c in _SHORT:
            return _SHORT[c]
        code = ord(c)
        if code <= 0x1F or code == 0x7F:
            return f"\\x{code:02x}"
        return f"\\u{{{code:x}}}"

    return _ESCAPED.sub(one, text)


def _duration(s: float) -> str:
    s = int(s)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class _Stage:
    __slots__ = ("name", "done", "total", "unit", "message", "started", "item")

    def __init__(self, name: str, total: int | None, unit: str | None) -> None:
        self.name = name
        self.done = 0
        self.total = total
        self.unit = unit
        self.message: str | None = None
        self.started = time.monotonic()
        self.item: str | None = None


class _Run:
    __slots__ = ("name", "started", "stages", "note")

    def __init__(self, name: str) -> None:
        self.name = name
        self.started = time.monotonic()
        self.stages: dict[str, Any] = {}
        self.note: str | None = None


class TerminalSink(Sink):
    policy = EVERY_TICK

    def __init__(self, out: IO[str], color: bool | None = None) -> None:
        self._out = out
        self._color = (not os.environ.get("NO_COLOR")) if color is None else color
        self._runs: dict[str, Any] = {}
        self._lines = 0
        self._dirty = False
        self._drawn_at = 0.0

    def _paint(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self._color else text

    def _above(self, text: str) -> None:
        """Prints a line above the bars; the producer's text in it is escaped already."""
        self._erase()
        self._out.write(text + "\n")
        self._dirty = True

    def println(self, line: str) -> None:
        """A line of the program's own, printed above the bars as it is."""
        self._above(line)
        self._drawn_at = 0.0

    def event(self, event: Event) -> None:
        f = event.fields
        name = event.event
        e = escape_controls
        run = self._runs.get(event.run)
        if name == "run.started":
            self._runs[event.run] = _Run(f.get("name") or event.run)
        elif run is None:
            return
        elif name == "run.finished":
            status = f.get("status")
            code = {"succeeded": "32", "failed": "31"}.get(str(status), "33")
            error = f.get("error")
            detail = f": {e(error)}" if error else ""
            self._above(
                self._paint(code, f"{'✔' if status == 'succeeded' else '✘'} {e(run.name)} {status}")
                + f" in {_duration(time.monotonic() - run.started)}{detail}"
            )
            del self._runs[event.run]
        elif name == "stage.started":
            run.stages[f["stage"]] = _Stage(f["stage"], f.get("total"), f.get("unit"))
        elif name == "stage.finished":
            stage = run.stages.pop(f["stage"], None)
            status = f["status"]
            code = {"succeeded": "32", "failed": "31"}.get(status, "33")
            count = ""
            if stage is not None:
                count = f" {stage.done}" + (f"/{stage.total}" if stage.total is not None else "")
            error = f.get("error")
            self._above(
                self._paint(code, f"  {e(f['stage'])} {status}")
                + f"{count} in {_duration(f['elapsed_s'])}"
                + (f": {e(error)}" if error else "")
            )
        elif name == "progress" and f.get("stage") in run.stages:
            stage = run.stages[f["stage"]]
            stage.done = f["done"]
            stage.total = f.get("total", stage.total)
            stage.unit = f.get("unit", stage.unit)
            stage.message = f.get("message")
        elif name == "item.started" and f.get("stage") in run.stages:
            run.stages[f["stage"]].item = f["item"]
        elif name == "item.finished" and f.get("status") == "failed":
            self._above(
                self._paint("31", f"  ✘ item {e(f['item'])}") + f": {e(f.get('error') or '')}"
            )
        elif name == "tool.finished" and f.get("status") == "failed":
            self._above(
                self._paint("31", f"  ✘ tool {e(f['tool'])}") + f": {e(f.get('error') or '')}"
            )
        elif name == "log" and f.get("level") != "debug":
            level = f["level"]
            code = {"warn": "33", "error": "31"}.get(level, "2")
            self._above(self._paint(code, f"  {level}") + f" {e(f['message'])}")
        elif name == "heartbeat":
            run.note = f.get("note")
        self._dirty = True

    def refresh(self) -> None:
        now = time.monotonic()
        if now - self._drawn_at < 0.1:
            return
        self._drawn_at = now
        self._erase()
        width = shutil.get_terminal_size((80, 24)).columns
        lines = []
        for run in self._runs.values():
            head = f"{self._paint('1', escape_controls(run.name))} {_duration(now - run.started)}"
            if run.note:
                head += f" · {escape_controls(run.note)}"
            lines.append(head)
            for stage in run.stages.values():
                lines.append(self._stage_line(stage, now, width))
        for line in lines:
            self._out.write(line + "\n")
        self._lines = len(lines)
        self._out.flush()

    def _stage_line(self, stage: _Stage, now: float, width: int) -> str:
        elapsed = now - stage.started
        # A plain average, once there is a second to average over.
        rate = stage.done / elapsed if elapsed >= 1.0 else 0.0
        unit = f" {escape_controls(stage.unit)}" if stage.unit else ""
        parts = [f"▸ {escape_controls(stage.name)[: max(width // 4, 8)]}"]
        if stage.total:
            frac = min(stage.done / stage.total, 1.0)
            filled = int(frac * 20)
            parts.append("█" * filled + "░" * (20 - filled))
            parts.append(f"{frac * 100:3.0f}%")
            parts.append(f"{stage.done}/{stage.total}{unit}")
            if rate > 0 and stage.done < stage.total:
                parts.append(f"ETA {_duration((stage.total - stage.done) / rate)}")
        else:
            parts.append(f"{stage.done}{unit}")
        if rate > 0:
            parts.append(f"{rate:.1f}/s")
        parts.append(_duration(elapsed))
        if stage.message:
            parts.append(escape_controls(stage.message))
        elif stage.item:
            parts.append(f"item {escape_controls(stage.item)}")
        line = "  ".join(parts)
        return line[: max(width - 1, 10)]

    def _erase(self) -> None:
        if self._lines:
            self._out.write(f"\x1b[{self._lines}F\x1b[J")
            self._lines = 0

    def flush(self, deadline: float) -> None:
        self._out.flush()

    def close(self, deadline: float) -> None:
        self._drawn_at = 0.0
        self.refresh()
        self._out.flush()
