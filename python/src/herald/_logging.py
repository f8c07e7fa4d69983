"""`LoggingHandler`: the standard library's log records as herald `log` events."""

from __future__ import annotations

import logging

from ._context import current_run
from ._run import Run


def _level(levelno: int) -> str:
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warn"
    if levelno >= logging.INFO:
        return "info"
    return "debug"


class LoggingHandler(logging.Handler):
    """Turns log records into `log` events of `run`, or of the current run
    (`herald.current_run()`) when none is given; records with no run open are dropped.
    DEBUG maps to `debug`, INFO to `info`, WARNING to `warn`, ERROR and CRITICAL to
    `error`. The message is the handler's formatted record (with the traceback, if any).

        logging.getLogger().addHandler(herald.LoggingHandler())
    """

    def __init__(self, run: Run | None = None, level: int = logging.NOTSET) -> None:
        if run is not None and not isinstance(run, Run):
            raise TypeError(f"run must be a herald.Run, not {type(run).__name__}")
        super().__init__(level)
        self._run = run

    def emit(self, record: logging.LogRecord) -> None:
        # herald's own threads log nothing through here: each delivery would log itself.
        if record.threadName in ("herald-progress", "herald-hub-sink"):
            return
        run = self._run if self._run is not None else current_run()
        if run is None or run.finished:
            return
        try:
            message = self.format(record)
            run.log(_level(record.levelno), message)
        except Exception:
            self.handleError(record)
