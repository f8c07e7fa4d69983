"""Stages (a counter, `stage.iter`'s items) and items."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from ._guard import _error_text, _Guard, builtins_id
from ._wire import (
    check_count,
    check_opt_count,
    check_opt_str,
    check_str,
    now_micros,
    round_seconds,
)

if TYPE_CHECKING:
    from ._loop import _Loop
    from ._run import Run


T = TypeVar("T")


class _Ends(_Guard):
    """The ending shared by `Stage` and `Item`: each status goes through `_end`."""

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
        raise NotImplementedError


class Stage(_Ends):
    """A stage of a run: a counter and its items. Created by `Run.stage`.

    `inc(n)` is a plain integer add on the caller's thread; the background thread
    samples it a few times a second. Counting one stage from several threads at once
    may lose counts where the interpreter switches threads inside `+=`.
    """

    def __init__(
        self,
        run: Run,
        name: str,
        total: int | None,
        unit: str | None,
        total_weight: int | None = None,
    ) -> None:
        if name in run._stages and not run._stages[name]._finished:
            raise ValueError(f"name: stage `{name}` is already running in this run")
        self._run = run
        self._name = name
        self._key = (run.id, name, id(self))
        self._done = 0
        self._total = total
        self._started_total = total
        self._unit = unit
        self._weight = 0
        self._total_weight = total_weight
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
        # Items this thread queued that the loop has not delivered yet: the sampler
        # holds its own until they are out, so that the stream keeps their order.
        self._settling = 0
        self._items_started = 0
        self._items_finished = 0
        run._stages[name] = self
        run._emit(
            "stage.started",
            {
                "stage": name,
                "total": total,
                "unit": unit,
                "total_weight": None if total_weight is None else float(total_weight),
            },
        )
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

    def inc_by(self, n: int, weight: int) -> None:
        """Counts `n` more units done, weighing `weight` (bytes, tokens, rows) in all."""
        # Both checked before either counts: a refused call changes nothing.
        n = check_count("n", n)
        self._weight += check_count("weight", weight)
        self._done += n

    def inc_weight(self, weight: int) -> None:
        """Counts `weight` more done (bytes, tokens, rows) of the units under way,
        without finishing one: a download's bytes as they arrive."""
        self._weight += check_count("weight", weight)

    @property
    def weight_done(self) -> int:
        return self._weight

    @property
    def total_weight(self) -> int | None:
        return self._total_weight

    def set_total_weight(self, total_weight: int) -> None:
        """Sets (or changes) the stage's whole weight."""
        self._total_weight = check_count("total_weight", total_weight)

    def set(self, done: int) -> None:
        """Sets the count."""
        self._done = check_count("done", done)

    def set_total(self, total: int) -> None:
        """Sets (or grows) the total."""
        self._total = check_count("total", total)

    def set_message(self, message: str | None) -> None:
        """What the stage is doing now; rides its `progress` ticks."""
        self._message = check_opt_str("message", message)

    def item(self, id: str, label: str | None = None, *, weight: int | None = None) -> Item:  # noqa: A002
        """Starts an item of this stage; its `weight`, when given, is added to the
        stage's weight done when it ends."""
        check_str("id", id)
        check_opt_str("label", label)
        check_opt_count("weight", weight)
        return Item(self._run, id, self._name, label, weight, counts_to=self)

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
        if self._settling and not final:
            return
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
            # Again under the lock: the check above is only a hint, and a new loop may
            # have queued the last one's items since.
            if self._settling and not final:
                return
            self._fold_iter(out, final)

    def _fold_iter(
        self, out: Callable[[str, dict[str, Any]], None] | None, final: bool = True
    ) -> None:
        """Under the lock: reports the items of `iter` up to where the loop is, through
        `out` (None: through the queue, on the caller's thread)."""
        emit = out if out is not None else self._run._emit
        before = (self._items_started, self._items_finished)
        k = self._iter_taken
        if self._iter_active:
            self._expand_items(emit, k, k - 1)
        elif self._iter_early:
            # Left early: the item in hand waits for the stage's end to know its status.
            self._expand_items(emit, k, k if final else k - 1)
            self._iter_early = not final
        else:
            self._expand_items(emit, k, k)
        if out is None and (self._items_started, self._items_finished) != before:
            # Queued behind what the loop has not yet taken: it delivers them first.
            self._settling += 1
            self._run._loop.push((7, self))

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


class Item(_Ends):
    """One unit of work. Created by `Run.item` or `Stage.item`."""

    def __init__(
        self,
        run: Run,
        id: str,  # noqa: A002
        stage: str | None,
        label: str | None,
        weight: int | None = None,
        counts_to: Stage | None = None,
    ) -> None:
        self._run = run
        self._id = id
        self._stage = stage
        # The stage its weight goes to when it ends: the one it was started in, not
        # whatever stage has that name by then.
        self._counts_to = counts_to
        self._weight = weight
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

    @property
    def weight(self) -> int | None:
        return self._weight

    def set_weight(self, weight: int) -> None:
        """Its size in bytes, tokens or rows, when known only once under way."""
        self._weight = check_count("weight", weight)

    def _end(self, status: str, error: str | None) -> None:
        if self._finished:
            return
        self._finished = True
        self._run._open.pop(builtins_id(self), None)
        weight = self._weight
        stage = self._counts_to
        if weight is not None and stage is not None and not stage._finished:
            stage.inc_weight(weight)
        self._run._emit(
            "item.finished",
            {
                "item": self._id,
                "stage": self._stage,
                "status": status,
                "error": error,
                "elapsed_s": round_seconds(time.monotonic() - self._started),
                "weight": None if weight is None else float(weight),
            },
        )
