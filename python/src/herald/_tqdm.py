"""tqdm: `herald.tqdm`, a drop-in for `tqdm.tqdm` that also reports to herald, and
`herald.capture_tqdm()`, which mirrors every tqdm bar other code creates as a stage of
the current run.

A bar's stage reads the bar's own `n` and `total` when the background thread samples
it, so a mirrored bar costs the loop nothing beyond tqdm's own work.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from tqdm.std import tqdm as _std_tqdm  # type: ignore[import-untyped]

from ._context import current_run
from ._progress import Progress
from ._run import Run
from ._stage import Stage
from ._targets import _targets_from_env
from ._wire import describe_exception


class _BarStage(Stage):
    """A stage whose count is a tqdm bar's."""

    _bar: Any

    def _sample(self) -> tuple[Any, ...]:
        bar = self._bar
        return _count(getattr(bar, "n", 0)), _total(getattr(bar, "total", None))


def _count(value: Any) -> int:
    try:
        return max(int(value), 0)
    except (TypeError, ValueError, OverflowError):
        return 0


def _total(value: Any) -> int | None:
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return int(f) if math.isfinite(f) and f >= 0 else None


def _stage_name(run: Run, bar: Any) -> str:
    desc = str(getattr(bar, "desc", "") or "").strip().rstrip(":").strip() or "tqdm"
    name, n = desc, 1
    while name in run._stages:  # a stage name once per run, finished or not
        n += 1
        name = f"{desc} ({n})"
    return name


def _attach(bar: Any, run: Run | None) -> None:
    """Mirrors `bar` as a stage of `run`, or of the current run; never raises."""
    if getattr(bar, "_herald_stage", None) is not None or getattr(bar, "disable", False):
        return
    try:
        owned = None
        if run is None:
            run = current_run()
        if run is None:
            return
        unit = getattr(bar, "unit", None)
        stage = _BarStage.__new__(_BarStage)
        stage._bar = bar
        Stage.__init__(
            stage,
            run,
            _stage_name(run, bar),
            _total(getattr(bar, "total", None)),
            unit if isinstance(unit, str) and unit and unit != "it" else None,
        )
        bar._herald_stage = stage
        bar._herald_run = owned
    except Exception:
        pass


def _detach(bar: Any, error: str | None) -> None:
    stage = getattr(bar, "_herald_stage", None)
    if stage is None or stage._finished:
        return
    try:
        if error is None:
            stage.finish()
        else:
            stage.fail(error)
        owned = getattr(bar, "_herald_run", None)
        if owned is not None:
            if error is None:
                owned._end("succeeded", None, None, wait=False)
            else:
                owned._end("failed", None, error, wait=False)
    except Exception:
        pass


_default_progress: Progress | None = None
_default_lock = threading.Lock()


def _default() -> Progress:
    """The reporter of bars that find no run open: the environment's targets, without
    herald's own bars (tqdm draws its own)."""
    global _default_progress
    with _default_lock:
        if _default_progress is None:
            _default_progress = Progress(_targets_from_env(bars=False))
        return _default_progress


class tqdm(_std_tqdm):  # type: ignore[misc]  # noqa: N801 - tqdm's own name
    """`tqdm.tqdm`, same signature, same bar, that also reports to herald: as a stage
    of the current run (`herald.current_run()`), or, with none open, as a run of its
    own on the environment's targets (`HERALD_*`), finished when the bar closes. A
    `with` block left by an exception fails the stage, naming the exception."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if getattr(self, "disable", False) or getattr(self, "_herald_stage", None) is not None:
            return
        run = current_run()
        if run is None:
            try:
                name = str(getattr(self, "desc", "") or "").strip().rstrip(":").strip()
                run = _default().run(name or "tqdm")
                _attach(self, run)
                if getattr(self, "_herald_stage", None) is not None:
                    self._herald_run = run
                return
            except Exception:
                return
        _attach(self, run)

    def close(self) -> None:
        _detach(self, None)
        super().close()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        if exc is not None:
            _detach(self, describe_exception(exc))
        return super().__exit__(exc_type, exc, tb)


def trange(*args: Any, **kwargs: Any) -> tqdm:
    """`tqdm(range(*args), **kwargs)`, reporting to herald."""
    return tqdm(range(*args), **kwargs)


class _Capture:
    """What `capture_tqdm` returns: a context manager (or call `stop()`) that puts
    tqdm back as it was."""

    def __init__(self, run: Run | None) -> None:
        self._run = run
        self._saved = (_std_tqdm.__init__, _std_tqdm.close, _std_tqdm.__exit__)
        init, close, exit_ = self._saved
        capture = self

        def patched_init(bar: Any, *args: Any, **kwargs: Any) -> None:
            init(bar, *args, **kwargs)
            if capture._active:
                _attach(bar, capture._run)

        def patched_close(bar: Any) -> None:
            _detach(bar, None)
            close(bar)

        def patched_exit(bar: Any, exc_type: Any, exc: Any, tb: Any) -> Any:
            if exc is not None:
                _detach(bar, describe_exception(exc))
            return exit_(bar, exc_type, exc, tb)

        self._active = True
        _std_tqdm.__init__ = patched_init
        _std_tqdm.close = patched_close
        _std_tqdm.__exit__ = patched_exit

    def stop(self) -> None:
        if self._active:
            self._active = False
            init, close, exit_ = self._saved
            _std_tqdm.__init__ = init
            _std_tqdm.close = close
            _std_tqdm.__exit__ = exit_

    def __enter__(self) -> _Capture:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def capture_tqdm(run: Run | None = None) -> _Capture:
    """Mirrors every tqdm bar created from now on (by any library: dataset downloads,
    model loading, pandas' `progress_apply`) as a stage of `run`, or of the run current
    when the bar is created; bars created with no run open are left alone. Returns a
    handle whose `stop()` (or the end of its `with` block) ends the capture."""
    if run is not None and not isinstance(run, Run):
        raise TypeError(f"run must be a herald.Run, not {type(run).__name__}")
    return _Capture(run)
