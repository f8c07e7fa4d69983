"""Where progress goes: `Target` and the targets the environment names, read as the Rust
SDK reads them (`HERALD_PROGRESS`, `HERALD_PROGRESS_FILE`, `HERALD_PROGRESS_FD`,
`HERALD_URL`, `HERALD_TOKEN`, `HERALD_RUN`)."""

from __future__ import annotations

import os
import sys
from typing import Any

from ._sinks import JsonLinesSink, MemorySink, Sink
from ._wire import (
    check_count,
    check_opt_str,
    check_run_id,
    check_str,
)


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
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, not {type(path).__name__}")
        try:
            return Target("sink", JsonLinesSink.path(os.fspath(path)))
        except OSError as e:
            raise ValueError(f"path: cannot open progress file {os.fspath(path)}: {e}") from None

    @staticmethod
    def json_fd(fd: int) -> Target:
        """JSON Lines on an inherited file descriptor."""
        return Target("sink", JsonLinesSink.fd(check_count("fd", fd)))

    @staticmethod
    def json_writer(out: Any) -> Target:
        """JSON Lines to a file object (text or binary)."""
        if not callable(getattr(out, "write", None)):
            raise TypeError(f"out must be a file object with `write`, not {type(out).__name__}")
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
        if sink is not None and not isinstance(sink, MemorySink):
            raise TypeError(f"sink must be a herald.MemorySink, not {type(sink).__name__}")
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
