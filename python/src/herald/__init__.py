"""herald for Python: progress of long-running programs and AI agents, as bars on a
terminal, JSON Lines, or events on a herald hub. The protocol is docs/protocol.md.

    import herald

    progress = herald.Progress.from_env()
    with progress.run("triage") as run:
        with run.stage("fetch", total=len(urls)) as stage:
            for url in stage.iter(urls):
                fetch(url)

`from herald import tqdm` is a drop-in for `tqdm.tqdm` that also reports to herald, and
`herald.capture_tqdm()` mirrors other libraries' tqdm bars (both need `tqdm`).
"""

from __future__ import annotations

from typing import Any

from ._calls import LlmCall, ToolCall
from ._context import current_run
from ._logging import LoggingHandler
from ._loop import Stats
from ._progress import Progress
from ._run import HeartbeatGuard, Run
from ._sinks import Event, MemorySink, Sink, SinkPolicy
from ._stage import Item, Stage
from ._targets import Target
from ._terminal import escape_controls

__all__ = [
    "Event",
    "HeartbeatGuard",
    "Item",
    "LlmCall",
    "LoggingHandler",
    "MemorySink",
    "Progress",
    "Run",
    "Sink",
    "SinkPolicy",
    "Stage",
    "Stats",
    "Target",
    "ToolCall",
    "capture_tqdm",
    "current_run",
    "escape_controls",
    "tqdm",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # tqdm is optional: imported only when asked for.
    if name in ("tqdm", "capture_tqdm", "trange"):
        from . import _tqdm

        return getattr(_tqdm, name)
    raise AttributeError(f"module 'herald' has no attribute {name!r}")
