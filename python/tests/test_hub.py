"""The hub sink against a real `herald serve`: the folded state equals what the program
reported; a hub SIGKILLed mid-run and restarted gets every milestone exactly once; a hub
that is down never raises nor blocks; cancel requests, attached runs, 413 and 429."""

from __future__ import annotations

import json
import socket
import time
from collections import Counter

import herald
from conftest import Hub, run_python, wait_until


def test_the_hubs_folded_state_is_what_the_program_reported(hub: Hub) -> None:
    progress = herald.Progress([herald.Target.hub(hub.url)])
    with progress.run("triage 4 documents", total_steps=2, meta={"team": "ops"}) as run:
        with run.stage("fetch", total=4, unit="docs") as stage:
            for _ in range(4):
                stage.inc(1)
        with run.stage("summarize", total=2) as stage:
            with stage.item("doc-1", label="doc-1: budget"):
                pass
            item = stage.item("doc-3", label="doc-3: hiring plan")
            with run.tool("search", {"q": "hiring plan"}, feedback="Searching the docs") as call:
                call.output = ["hr/plan-2027.md"]
            with run.llm(model="claude-sonnet-4-5", provider="anthropic") as llm:
                llm.text("The plan adds ")
                llm.text("two roles.")
                llm.usage(input_tokens=812, output_tokens=64)
                llm.set_stop_reason("end_turn")
            item.fail("the model answered malformed JSON")
        run.warn("1 document failed")
        run.finish({"summaries": 1})

    state = hub.finished_state(run.id)
    assert state["name"] == "triage 4 documents"
    assert state["status"] == "succeeded"
    assert state["meta"] == {"team": "ops"}
    assert state["total_steps"] == 2
    assert state["percent"] == 100.0
    assert state["result"] == {"summaries": 1}
    stages = {s["name"]: s for s in state["stages"]}
    assert stages["fetch"]["status"] == "succeeded"
    assert (stages["fetch"]["done"], stages["fetch"]["total"]) == (4, 4)
    assert stages["fetch"]["unit"] == "docs"
    assert stages["summarize"]["status"] == "succeeded"
    assert stages["summarize"]["items_succeeded"] == 1
    assert stages["summarize"]["items_failed"] == 1
    assert state["items"] == {"succeeded": 1, "failed": 1, "skipped": 0, "running": 0}
    assert state["failed_items"][0]["item"] == "doc-3"
    assert state["failed_items"][0]["label"] == "doc-3: hiring plan"
    assert state["failed_items"][0]["error"] == "the model answered malformed JSON"
    assert state["tools"]["succeeded"] == 1
    done = state["tools"]["done"][0]
    assert (done["tool"], done["input"], done["feedback"]) == (
        "search",
        {"q": "hiring plan"},
        "Searching the docs",
    )
    assert state["llm"]["calls"] == 1
    assert state["llm"]["in_flight"] == []
    assert (state["llm"]["input_tokens"], state["llm"]["output_tokens"]) == (812, 64)
    assert state["llm"]["model"] == "claude-sonnet-4-5"
    assert state["text"] == "The plan adds two roles."
    assert [log["message"] for log in state["logs"]] == ["1 document failed"]
    # Every event carries the sink's idempotency id `session:seq`.
    events = hub.events(run.id)
    ids = [e["id"] for e in events]
    assert len(set(ids)) == len(ids)
    session = ids[0].split(":")[0]
    assert [i.split(":")[0] for i in ids] == [session] * len(ids)


def test_a_hub_killed_and_restarted_gets_every_milestone_exactly_once(hub: Hub) -> None:
    progress = herald.Progress([herald.Target.hub(hub.url)])
    run = progress.run("survives a crash")
    stage = run.stage("work", total=60)
    ids = [f"doc-{i}" for i in range(60)]
    for i, item_id in enumerate(ids):
        with stage.item(item_id):
            stage.inc(1)
        if i == 19:
            # The first third is on the hub: kill it without a goodbye.
            wait_until(
                lambda: hub.count(run.id, "item.finished") >= 20,
                what="the first 20 items on the hub",
            )
            hub.kill()
        if i == 39:
            hub.restart()
    stage.finish()
    run.finish({"items": 60})

    hub.finished_state(run.id, timeout=30)
    events = hub.events(run.id)
    finished = Counter(e["item"] for e in events if e["event"] == "item.finished")
    started = Counter(e["item"] for e in events if e["event"] == "item.started")
    assert finished == Counter(ids)
    assert started == Counter(ids)
    milestones = [e for e in events if e["event"] not in ("progress", "heartbeat", "log")]
    assert len({e["id"] for e in milestones}) == len(milestones)
    assert [e["event"] for e in events].count("run.started") == 1
    assert [e["event"] for e in events].count("run.finished") == 1
    assert events[-1]["event"] == "run.finished"
    assert events[-1]["result"] == {"items": 60}
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_hub_that_is_down_never_raises_nor_blocks() -> None:
    sink = herald.MemorySink()
    url = f"http://127.0.0.1:{_closed_port()}"
    progress = herald.Progress([herald.Target.hub(url), herald.Target.memory(sink)])
    started = time.monotonic()
    with progress.run("offline") as run:
        with run.stage("work", total=1000) as stage:
            for _ in stage.iter(range(1000)):
                pass
        run.info("still here")
        wait_until(
            lambda: any("cannot report to the hub" in e.get("message", "") for e in sink.events),
            what="the hub sink's warning",
        )
    progress.close()
    # Finishing did not wait for a hub never reached (the flush deadline is 5 s).
    assert time.monotonic() - started < 4.0
    warnings = [e for e in sink.events if e["event"] == "log" and e["level"] == "warn"]
    assert len(warnings) == 1, warnings
    assert url in warnings[0]["message"]
    assert progress.stats.hub_dropped_milestones > 0


def test_a_cancel_request_reaches_the_program_through_append_replies(hub: Hub, monkeypatch) -> None:
    from herald import _hub

    # Without the long poll (tested below), only append replies can tell the program.
    monkeypatch.setattr(_hub.HubSink, "_follow", lambda self, run, token: None)
    progress = herald.Progress([herald.Target.hub(hub.url)])
    with progress.run("cancellable") as run:
        run.info("working")
        wait_until(lambda: hub.count(run.id, "log") >= 1, what="the run on the hub")
        hub.post(f"/v1/runs/{run.id}/cancel", {"reason": "enough"})
        assert not run.cancelled

        def told() -> bool:
            run.beat("still working")  # each append reply carries cancel_requested
            progress.flush(1.0)
            return run.cancelled

        wait_until(told, what="run.cancelled")
        run.finish_cancelled("asked to stop")
    state = hub.finished_state(run.id)
    assert state["status"] == "cancelled"
    assert state["cancel_reason"] == "enough"


def test_herald_run_attaches_the_first_run_to_an_existing_hub_run(hub: Hub) -> None:
    created = hub.post("/v1/runs", {"id": "exec-7", "name": "herald exec"})
    code = """
import herald
progress = herald.Progress.from_env()
with progress.run("the command") as run:
    assert run.id == "exec-7", run.id
    with run.stage("work", total=3) as stage:
        for _ in stage.iter(range(3)):
            pass
"""
    out = run_python(
        code,
        env={
            "HERALD_URL": hub.url,
            "HERALD_TOKEN": created["write_token"],
            "HERALD_RUN": "exec-7",
            "HERALD_PROGRESS": "none",
        },
    )
    assert out.returncode == 0, out.stderr
    events = hub.events("exec-7")
    kinds = [e["event"] for e in events]
    assert "run.started" not in kinds and "run.finished" not in kinds
    assert "stage.finished" in kinds
    assert events[-1]["event"] == "log"
    assert events[-1]["message"] == "the program's work succeeded"
    assert hub.state("exec-7")["status"] == "running"


def test_a_batch_too_large_is_halved(hub: Hub) -> None:
    port = int(hub.addr.rsplit(":", 1)[1])
    hub.kill()
    progress = herald.Progress([herald.Target.hub(f"http://127.0.0.1:{port}")])
    run = progress.run("big events")
    blob = "x" * 10_000
    for i in range(600):  # 500 of them are over the hub's 4 MiB body limit
        run.custom("blob", n=i, data=blob)
    run.finish()  # a hub never reached is not waited for
    hub.restart()
    hub.finished_state(run.id, timeout=60)
    blobs = [e["n"] for e in hub.events(run.id) if e["event"] == "custom.blob"]
    assert blobs == list(range(600))


def test_a_burst_past_ten_thousand_events_waits_whole_for_the_hub(hub: Hub) -> None:
    # The outbox is bounded in bytes (8 MiB), not at the 10 000 events it once held: a
    # burst of 15 000 small milestones waits whole for a hub that is away, and the
    # program's memory stays bounded.
    hub.kill()
    progress = herald.Progress([herald.Target.hub(hub.url)])
    run = progress.run("burst")
    for i in range(15_000):
        run.warn(f"{i}")
    run.finish()  # a hub never reached is not waited for
    assert progress.stats.hub_dropped_milestones == 0
    hub.restart()
    hub.finished_state(run.id, timeout=60)
    warned = [
        e["message"]
        for e in hub.events(run.id)
        if e["event"] == "log" and e["level"] == "warn" and e["message"].isdigit()
    ]
    assert warned == [str(i) for i in range(15_000)]


def test_a_rate_limited_hub_is_retried_after_retry_after(herald_bin: str, tmp_path) -> None:
    hub = Hub(herald_bin, tmp_path / "limited")
    hub.start(("--rate-limit", "200"))  # bursts of 1000: the rest waits for Retry-After
    try:
        progress = herald.Progress([herald.Target.hub(hub.url)])
        run = progress.run("limited")
        for i in range(1500):
            run.custom("n", i=i)
        run.finish()
        hub.finished_state(run.id, timeout=60)
        got = [e["i"] for e in hub.events(run.id) if e["event"] == "custom.n"]
        assert got == list(range(1500))
    finally:
        hub.stop()


def test_json_lines_and_the_hub_get_the_same_milestones(hub: Hub, tmp_path) -> None:
    path = tmp_path / "progress.jsonl"
    code = """
import herald
progress = herald.Progress.from_env()
with progress.run("both") as run:
    with run.stage("s", total=3) as stage:
        for _ in stage.iter(range(3)):
            run.info("tick")
print(run.id)
"""
    out = run_python(
        code,
        env={"HERALD_URL": hub.url, "HERALD_PROGRESS_FILE": str(path), "HERALD_PROGRESS": "none"},
    )
    assert out.returncode == 0, out.stderr
    run_id = out.stdout.strip()
    local = [json.loads(line) for line in path.read_text().splitlines()]
    remote = hub.events(run_id)

    def milestones(events: list) -> list:
        return [
            (e["event"], e.get("stage"), e.get("message"))
            for e in events
            if e["event"] not in ("progress", "heartbeat", "item.started", "item.finished")
        ]

    assert milestones(local) == milestones(remote)


def test_at_exit_open_runs_are_finished_and_flushed_to_the_hub(hub: Hub) -> None:
    code = """
import herald
progress = herald.Progress.from_env()
run = progress.run("left open", id="left-open-1")
stage = run.stage("work", total=50)
for i in range(50):
    with stage.item(f"doc-{i}"):
        stage.inc(1)
# no finish: the program just ends
"""
    out = run_python(code, env={"HERALD_URL": hub.url, "HERALD_PROGRESS": "none"})
    assert out.returncode == 0, out.stderr
    # Delivered before the process ended: nothing to wait for.
    events = hub.events("left-open-1")
    assert sum(e["event"] == "item.finished" for e in events) == 50
    end = events[-1]
    assert (end["event"], end["status"], end["error"]) == (
        "run.finished",
        "failed",
        "the program exited with the run open",
    )
    assert hub.state("left-open-1")["stages"][0]["status"] == "failed"


def test_a_silent_run_hears_a_cancel_through_the_long_poll(hub: Hub) -> None:
    progress = herald.Progress([herald.Target.hub(hub.url)])
    with progress.run("silent") as run:
        run.info("on the hub")
        wait_until(lambda: hub.count(run.id, "log") >= 1, what="the run on the hub")
        hub.post(f"/v1/runs/{run.id}/cancel", {"reason": "stop now"})
        # No append after the request: only the sink's long poll can tell the program.
        wait_until(lambda: run.cancelled, what="run.cancelled without an append")
        run.finish_cancelled()
    assert hub.finished_state(run.id)["status"] == "cancelled"


def test_a_hub_that_went_away_holds_a_finish_at_most_the_flush_deadline(hub: Hub) -> None:
    progress = herald.Progress([herald.Target.hub(hub.url)], flush_deadline=1.0)
    run = progress.run("hub goes away")
    run.info("reached")
    wait_until(lambda: hub.count(run.id, "log") >= 1, what="the run on the hub")
    hub.kill()
    for i in range(100):
        run.info(f"line {i}")
    started = time.monotonic()
    run.finish()  # waits for the hub, up to the deadline, and never raises
    waited = time.monotonic() - started
    assert 0.9 <= waited < 3.0, waited
    started = time.monotonic()
    progress.close()  # the hub was waited for once already: not again
    assert time.monotonic() - started < 0.9
    # what never reached the hub is counted: the info lines (ticks) and the finish
    assert progress.stats.hub_dropped_ticks >= 100
    assert progress.stats.hub_dropped_milestones >= 1


def test_a_hub_with_an_admin_token(herald_bin: str, tmp_path) -> None:
    admin = "admin-token-0123456789"
    hub = Hub(herald_bin, tmp_path / "guarded")
    hub.start(("--token", admin))
    try:
        sink = herald.MemorySink()
        good = herald.Progress([herald.Target.hub(hub.url, token=admin)])
        with good.run("with the admin token") as run:
            run.info("appended with the run's write token")
        state = hub.get(f"/v1/runs/{run.id}", token=admin)
        assert state["status"] == "succeeded"
        assert state["logs"][0]["message"] == "appended with the run's write token"

        bad = herald.Progress(
            [herald.Target.hub(hub.url, token="not-the-admin-token"), herald.Target.memory(sink)]
        )
        with bad.run("refused") as refused:
            refused.info("never stored")
            wait_until(
                lambda: any(e["event"] == "log" and e["level"] == "warn" for e in sink.events),
                what="the refusal's warning",
            )
        warnings = [
            e["message"] for e in sink.events if e["event"] == "log" and e["level"] == "warn"
        ]
        assert len(warnings) == 1 and "(401)" in warnings[0], warnings
        assert bad.stats.hub_dropped_milestones >= 1
    finally:
        hub.stop()


def test_making_room_evicts_the_oldest_tick_not_one_being_sent() -> None:
    # A tick in the request in flight is acknowledged or sent again with it: evicting it
    # would let the acknowledgement take an unsent event off the queue instead.
    from herald._hub import _ENTRY_BYTES, OUTBOX_BYTES, HubSink, _RunQueue

    sink = HubSink.__new__(HubSink)  # its state alone, without its threads
    sink._progress = lambda: None  # type: ignore[assignment]
    queue = _RunQueue("r")
    queue.events.extend([(b"1", False), (b"2", True), (b"3", False), (b"4", False)])
    queue.in_flight = 1
    sink._runs = {"r": queue}
    size = 1 + _ENTRY_BYTES
    sink._queued, sink._bytes, sink._tick_bytes = 4, 4 * size, 3 * size
    room = OUTBOX_BYTES - sink._bytes + size  # one event of this size more than fits

    assert sink._make_room(room, milestone=True)
    assert [data for data, _ in queue.events] == [b"1", b"2", b"4"]
    assert (sink._queued, sink._bytes, sink._tick_bytes) == (3, 3 * size, 2 * size)
    # A tick makes no room, and a milestone that evicting every tick not in flight
    # would not fit evicts none.
    assert not sink._make_room(room, milestone=False)
    assert not sink._make_room(room + 2 * size, milestone=True)
    assert [data for data, _ in queue.events] == [b"1", b"2", b"4"]
