"""Which run is current: `current_run()`, for the tqdm bridge and the logging handler."""

from __future__ import annotations

import contextvars
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._run import Run


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
