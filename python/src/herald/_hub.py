"""The hub sink: batches a program's events to a herald hub without holding it up.

Mirrors crates/herald/src/hub.rs: an outbox bounded in bytes (8 MiB of the events' JSON,
each encoded once when queued; the oldest tick not in the request in flight makes room for
a milestone) drained by a sender thread of its own ("herald-hub-sink",
blocking `urllib`, no event loop forced on the program); the run created from its
`run.started` (`POST /v1/runs`) and appended to with the write token the hub returns;
batches of up to 500, halved on `413`; every event stamped `<session>:<seq>` so a retried
batch is never stored twice; retries with jittered exponential backoff (200 ms to 10 s)
that wait at least the `Retry-After` the hub sent; `cancel_requested` from append replies
passed to `Run.cancelled`, and followed with a long poll per open run once it is on
the hub (so a silent run hears a cancel at once); one warning when the hub cannot be
reached or refuses; a bounded flush when a run finishes and at exit, and none for a hub
never reached.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections import deque
from typing import Any

from ._sinks import Event, Sink, SinkPolicy
from ._wire import is_milestone, to_json_text

#: Bytes the outbox holds at most (each event's JSON and `_ENTRY_BYTES`): what a hub that
#: is away may cost the program's memory, and room for a burst of some 40 000 item events
#: to wait whole for a hub that is up but slower than the burst.
OUTBOX_BYTES = 8 * 1024 * 1024
#: What an entry of the outbox costs beside its JSON (its tuple and bytes object).
_ENTRY_BYTES = 100
BATCH = 500
BACKOFF_MIN = 0.2
BACKOFF_MAX = 10.0
REQUEST_TIMEOUT = 10.0
#: How long one long poll for a run's cancel request waits on the hub.
CANCEL_POLL = 20.0


class _RunQueue:
    __slots__ = ("id", "create", "write_token", "events", "in_flight", "finishing")

    def __init__(self, run_id: str) -> None:
        self.id = run_id
        self.create: dict[str, Any] | None = None
        self.write_token: str | None = None
        self.events: deque[tuple[bytes, bool]] = deque()  # (the event's JSON, milestone)
        #: The first `events` the request in flight carries: acknowledged or sent again
        #: together, so none of them is evicted to make room.
        self.in_flight = 0
        self.finishing = False


class HubSink(Sink):
    policy = SinkPolicy()

    def __init__(
        self,
        url: str,
        token: str | None,
        attach: str | None,
        flush_deadline: float,
        progress: Any,
    ) -> None:
        self._url = url
        self._token = token
        self._attach = attach
        self._flush_deadline = flush_deadline
        self._progress = weakref.ref(progress)
        self._session = os.urandom(8).hex()
        self._cond = threading.Condition()
        self._runs: dict[str, Any] = {}
        self._queued = 0
        self._bytes = 0  # what the queued events count against OUTBOX_BYTES
        self._tick_bytes = 0  # of it, the ticks'
        self._closing = False
        self._abandon = False
        self._retry_at: float | None = None
        self._reached = False
        self._unanswered = 0
        self._batch = BATCH
        self._backoff = BACKOFF_MIN
        self._warned = False
        self._following: set[str] = set()
        self._unreachable = False
        self._thread = threading.Thread(target=self._sender, name="herald-hub-sink", daemon=True)
        self._thread.start()

    # --- the loop's side ---------------------------------------------------------

    def event(self, event: Event) -> None:
        attached = event.run == self._attach
        name, fields = event.event, event.fields
        if attached and name == "run.started":
            return  # its owner started it, and will finish it
        if attached and name == "run.finished":
            status = fields.get("status")
            level, outcome = {
                "succeeded": ("info", "succeeded"),
                "failed": ("error", "failed"),
            }.get(str(status), ("warn", "was cancelled"))
            error = fields.get("error")
            detail = f": {error}" if error else ""
            name, fields = (
                "log",
                {"level": level, "message": f"the program's work {outcome}{detail}"},
            )
        draft: dict[str, Any] = {
            "event": name,
            "ts": event.ts,
            "id": f"{self._session}:{event.seq}",
        }
        if event.parent is not None:
            draft["parent"] = event.parent
        for k, v in fields.items():
            if v is not None:
                draft[k] = v
        milestone = is_milestone(name, fields)
        try:
            data = to_json_text(draft).encode("utf-8")
        except (TypeError, ValueError):
            # Nothing the hub could take: as lost as an event refused.
            with self._cond:
                self._count(milestone)
            return
        size = len(data) + _ENTRY_BYTES
        finishing = event.event == "run.finished"
        create = None
        if event.event == "run.started" and not attached:
            run_name = fields.get("name") or ""
            create = {"id": event.run, "name": run_name if run_name.strip() else event.run}
            if event.parent is not None:
                create["parent"] = event.parent
            if fields.get("meta") is not None:
                create["meta"] = fields["meta"]
        with self._cond:
            # A run's finish is let past the bound: without it the run never ends on the hub.
            full = self._bytes + size > OUTBOX_BYTES
            if full and not finishing and not self._make_room(size, milestone):
                self._count(milestone)
                return
            queue = self._runs.get(event.run)
            if queue is None:
                queue = self._runs[event.run] = _RunQueue(event.run)
            if create is not None:
                queue.create = create
            queue.finishing |= finishing
            queue.events.append((data, milestone))
            self._queued += 1
            self._bytes += size
            if not milestone:
                self._tick_bytes += size
            self._cond.notify_all()

    def _make_room(self, size: int, milestone: bool) -> bool:
        """Evicts the oldest queued ticks, none of the request in flight, until `size`
        more bytes fit, for a milestone; whether they fit. A tick makes no room."""
        if not milestone:
            return False
        # The ticks of the request in flight (at most one batch to look at) stay.
        in_flight = sum(
            len(data) + _ENTRY_BYTES
            for queue in self._runs.values()
            for data, m in itertools.islice(queue.events, queue.in_flight)
            if not m
        )
        if self._bytes - (self._tick_bytes - in_flight) + size > OUTBOX_BYTES:
            return False  # evicting every tick that may go would not be enough
        for queue in self._runs.values():
            need = self._bytes + size - OUTBOX_BYTES
            if need <= 0:
                break
            evict: list[int] = []
            events = itertools.islice(queue.events, queue.in_flight, None)
            for i, (data, m) in enumerate(events, start=queue.in_flight):
                if need <= 0:
                    break
                if not m:
                    evict.append(i)
                    need -= len(data) + _ENTRY_BYTES
            for i in reversed(evict):  # from the back, so that the positions hold
                data, _ = queue.events[i]
                del queue.events[i]
                self._forget(data, milestone=False)
                self._count(False)
        return self._bytes + size <= OUTBOX_BYTES

    def _forget(self, data: bytes, milestone: bool) -> None:
        """Takes an event that left the outbox out of its counts."""
        size = len(data) + _ENTRY_BYTES
        self._queued -= 1
        self._bytes -= size
        if not milestone:
            self._tick_bytes -= size

    def _count(self, milestone: bool) -> None:
        progress = self._progress()
        if progress is not None:
            if milestone:
                progress.stats.hub_dropped_milestones += 1
            else:
                progress.stats.hub_dropped_ticks += 1

    def _never_reached(self) -> bool:
        return not self._reached and self._unanswered > 0

    def flush(self, deadline: float) -> None:
        """Waits until the hub has every event queued so far, or `deadline`; not at all
        for a hub never reached."""
        with self._cond:
            while self._queued > 0 and not self._abandon and not self._never_reached():
                left = deadline - time.monotonic()
                if left <= 0:
                    if deadline > 0:
                        # A wait of the whole deadline: the hub is away; closing will
                        # not wait for it again.
                        self._unreachable = True
                    return
                self._cond.wait(left)

    def close(self, deadline: float) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            if self._never_reached() or self._unreachable:
                deadline = 0.0
            while self._queued > 0 and not self._abandon:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._abandon = True
                    for queue in self._runs.values():
                        for _, milestone in queue.events:
                            self._count(milestone)
                    break
                self._cond.wait(left)
            self._cond.notify_all()

    # --- the sender thread -------------------------------------------------------

    def _sender(self) -> None:
        while True:
            with self._cond:
                # The last request is over: what it carried and the hub did not take is
                # sent again, and its ticks may make room again.
                for queue in self._runs.values():
                    queue.in_flight = 0
            job = self._next_job()
            if job is None:
                return
            try:
                self._send(*job)
            except Exception as e:  # never die: the rest may still go
                self._retry_later(job[0], f"internal error: {e!r}", None)

    def _next_job(self) -> tuple[Any, ...] | None:
        with self._cond:
            while True:
                if self._abandon or (self._closing and self._queued == 0):
                    return None
                wait = None if self._retry_at is None else self._retry_at - time.monotonic()
                if wait is None or wait <= 0:
                    for queue in self._runs.values():
                        if queue.events:
                            n = min(max(self._batch, 1), len(queue.events))
                            drafts = [queue.events[i][0] for i in range(n)]
                            queue.in_flight = n
                            token = queue.write_token or self._token
                            return queue.id, queue.create, token, drafts
                    self._retry_at = None
                    wait = 1.0
                self._cond.wait(wait)

    def _send(
        self, run: str, create: dict[str, Any] | None, token: str | None, drafts: list[bytes]
    ) -> None:
        if create is not None:
            reply = self._post("/v1/runs", self._token, to_json_text(create).encode("utf-8"))
            if reply[0] == "ok":
                write_token = reply[1].get("write_token")
                with self._cond:
                    queue = self._runs.get(run)
                    if queue is not None:
                        queue.create = None
                        if write_token:
                            queue.write_token = write_token
                            token = write_token
            elif reply[0] == "refused" and reply[1] == 409:
                # It exists: an earlier attempt whose reply was lost created it.
                with self._cond:
                    if run in self._runs:
                        self._runs[run].create = None
            elif reply[0] == "refused":
                return self._give_up(run, reply[1], reply[2])
            else:
                return self._retry_later(run, reply[1], reply[2])
        reply = self._post(f"/v1/runs/{run}/events", token, b"[" + b",".join(drafts) + b"]")
        if reply[0] == "ok":
            self._backoff = BACKOFF_MIN
            if reply[1].get("cancel_requested") is True:
                progress = self._progress()
                if progress is not None:
                    progress._cancel_requested(run)
            self._take_front(run, len(drafts), lost=False)
            self._follow(run, token)
        elif reply[0] == "refused":
            status, message = reply[1], reply[2]
            if status == 404 and create is None and self._created(run):
                with self._cond:
                    self._runs[run].create = {"id": run, "name": run}
            elif status == 413 and len(drafts) > 1:
                with self._cond:
                    self._batch = max(len(drafts) // 2, 1)
            elif status in (400, 413):
                self._warn(
                    run, f"herald: the hub refused events of run {run} ({status}): {message}"
                )
                self._take_front(run, len(drafts), lost=True)
            else:
                self._give_up(run, status, message)
        else:
            self._retry_later(run, reply[1], reply[2])

    def _follow(self, run: str, token: str | None) -> None:
        """Once the run is on the hub, follows its cancel state with long polls on a
        thread of its own (one held connection per open run), so that a program that
        reports nothing still hears a cancel at once."""
        with self._cond:
            if run in self._following or self._closing:
                return
            queue = self._runs.get(run)
            if queue is None or queue.finishing:
                return
            self._following.add(run)
        threading.Thread(
            target=self._follow_cancel, args=(run, token), name="herald-hub-cancel", daemon=True
        ).start()

    def _follow_cancel(self, run: str, token: str | None) -> None:
        headers = {"User-Agent": "herald-python"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        after = 0
        failures = 0
        while True:
            with self._cond:
                queue = self._runs.get(run)
                if self._closing or queue is None or queue.finishing:
                    return
            url = (
                f"{self._url}/v1/runs/{run}/events?types=run.cancel_requested"
                f"&wait={CANCEL_POLL:g}&after={after}"
            )
            try:
                request = urllib.request.Request(url, headers=headers)
                with urllib.request.urlopen(request, timeout=CANCEL_POLL + REQUEST_TIMEOUT) as r:
                    page = json.loads(r.read())
                failures = 0
            except Exception:
                # The hub is away or refuses: append replies still carry the news.
                failures += 1
                time.sleep(min(BACKOFF_MIN * 2**failures, BACKOFF_MAX))
                continue
            events = page.get("events") or []
            if events:
                after = events[-1].get("seq", after)
                progress = self._progress()
                if progress is not None:
                    progress._cancel_requested(run)
                return

    def _created(self, run: str) -> bool:
        with self._cond:
            queue = self._runs.get(run)
            return queue is not None and queue.write_token is not None

    def _post(self, path: str, token: str | None, data: bytes) -> tuple[Any, ...]:
        headers = {"Content-Type": "application/json", "User-Agent": "herald-python"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self._url + path, data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:
                text = response.read()
            self._answered()
            try:
                return ("ok", json.loads(text) if text else {})
            except ValueError:
                return ("ok", {})
        except urllib.error.HTTPError as e:
            self._answered()
            status = e.code
            try:
                error = json.loads(e.read()).get("error", {})
                message = error.get("message") or error.get("code") or e.reason
            except Exception:
                message = str(e.reason)
            if status == 429 or 500 <= status <= 599:
                return ("retry", f"HTTP {status}: {message}", _retry_after(e.headers))
            return ("refused", status, message)
        except Exception as e:  # no connection, no reply, a timeout
            with self._cond:
                if not self._reached:
                    self._unanswered += 1
                self._cond.notify_all()
            return ("retry", str(getattr(e, "reason", e)), None)

    def _answered(self) -> None:
        with self._cond:
            self._reached = True

    def _take_front(self, run: str, n: int, lost: bool) -> None:
        with self._cond:
            queue = self._runs.get(run)
            if queue is not None:
                n = min(n, len(queue.events))
                for _ in range(n):
                    data, milestone = queue.events.popleft()
                    self._forget(data, milestone)
                    if lost:
                        self._count(milestone)
                queue.in_flight = max(queue.in_flight - n, 0)
                if not queue.events and queue.finishing:
                    del self._runs[run]
            self._cond.notify_all()

    def _give_up(self, run: str, status: int, message: str) -> None:
        self._warn(
            run,
            f"herald: the hub refused the events of run {run} ({status}): {message}; "
            "they are dropped",
        )
        with self._cond:
            queue = self._runs.pop(run, None)
            if queue is not None:
                for data, milestone in queue.events:
                    self._forget(data, milestone)
                    self._count(milestone)
            self._cond.notify_all()

    def _retry_later(self, run: str, why: str, retry_after: float | None) -> None:
        self._warn(run, f"herald: cannot report to the hub at {self._url} ({why}); retrying")
        spread = random.random()
        if retry_after is not None:
            wait = retry_after * (1.0 + spread / 10.0)
        else:
            wait = self._backoff * (0.5 + spread / 2.0)
            self._backoff = min(self._backoff * 2.0, BACKOFF_MAX)
        with self._cond:
            self._retry_at = time.monotonic() + wait
            self._cond.notify_all()

    def _warn(self, run: str, message: str) -> None:
        if self._warned:
            return
        self._warned = True
        progress = self._progress()
        if progress is not None:
            progress._notice(run, message)


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if value is None:
        return None
    try:
        return min(max(float(value), 0.0), BACKOFF_MAX)
    except ValueError:
        return None
