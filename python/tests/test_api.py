"""The API: bad input raises at the call naming the argument; an exception fails the item,
the stage and the run, naming it, and still propagates; heartbeats; asyncio; logging."""

from __future__ import annotations

import asyncio
import logging
import math
import re
import sys
import threading

import pytest

import herald
from conftest import wait_until


def memory(**kw):
    sink = herald.MemorySink()
    return herald.Progress([herald.Target.memory(sink)], **kw), sink


def of(sink: herald.MemorySink, kind: str) -> list:
    return [e for e in sink.events if e["event"] == kind]


@pytest.mark.parametrize(
    ("call", "error", "named"),
    [
        (lambda r: r.stage("s", total=-1), ValueError, "total"),
        (lambda r: r.stage("s", total="10"), TypeError, "total"),
        (lambda r: r.stage("s", total=True), TypeError, "total"),
        (lambda r: r.stage("s", total=2.5), TypeError, "total"),
        (lambda r: r.stage(""), ValueError, "name"),
        (lambda r: r.stage("s", unit=""), ValueError, "unit"),
        (lambda r: r.stage("s", unit=3), TypeError, "unit"),
        (lambda r: r.tool("t").progress(1, unit=""), ValueError, "unit"),
        (lambda r: r.stage(7), TypeError, "name"),
        (lambda r: r.item(42), TypeError, "id"),
        (lambda r: r.item(""), ValueError, "id"),
        (lambda r: r.stage("s").item(None), TypeError, "id"),
        (lambda r: r.stage("s").inc(-1), ValueError, "n"),
        (lambda r: r.stage("s").inc("1"), TypeError, "n"),
        (lambda r: r.stage("s").inc(1.0), TypeError, "n"),
        (lambda r: r.stage("s").set_total(-5), ValueError, "total"),
        (lambda r: r.stage("s", total_weight=-1), ValueError, "total_weight"),
        (lambda r: r.stage("s", total_weight=2.5), TypeError, "total_weight"),
        (lambda r: r.stage("s").set_total_weight(-1), ValueError, "total_weight"),
        (lambda r: r.stage("s").inc_weight(-3), ValueError, "weight"),
        (lambda r: r.stage("s").inc_by(1, "9"), TypeError, "weight"),
        (lambda r: r.stage("s").inc_by(-1, 9), ValueError, "n"),
        (lambda r: r.stage("s").item("x", weight=-1), ValueError, "weight"),
        (lambda r: r.item("x", weight=True), TypeError, "weight"),
        (lambda r: r.item("x").set_weight("big"), TypeError, "weight"),
        (lambda r: r.finish(object()), TypeError, "result"),
        (lambda r: r.finish({"x": math.nan}), ValueError, "result"),
        (lambda r: r.finish({1j: 1}), TypeError, "result"),
        (lambda r: r.tool("t", {1, 2}), TypeError, "input"),
        (lambda r: r.tool("", None), ValueError, "name"),
        (lambda r: r.tool_selected("t", object()), TypeError, "input"),
        (lambda r: r.llm(model=3), TypeError, "model"),
        (lambda r: r.llm().usage(input_tokens=-1), ValueError, "input_tokens"),
        (lambda r: r.llm().text(b"bytes"), TypeError, "delta"),
        (lambda r: r.heartbeat(every=0), ValueError, "every"),
        (lambda r: r.heartbeat(every="10"), TypeError, "every"),
        (lambda r: r.log("loud", "x"), ValueError, "level"),
        (lambda r: r.info(None), TypeError, "message"),
        (lambda r: r.iteration(0), ValueError, "iteration"),
        (lambda r: r.history([{"role": "user"}]), ValueError, "messages[0]"),
        (lambda r: r.custom("Deploy"), ValueError, "name"),
        (lambda r: r.custom("deploy", seq=3), ValueError, "seq"),
        (lambda r: r.fail(3), TypeError, "error"),
        (lambda r: r.progress.run("x", id="has space"), ValueError, "id"),
        (lambda r: r.progress.run("x", parent="bad/parent"), ValueError, "parent"),
        (lambda r: r.progress.run("x", meta=[1]), TypeError, "meta"),
        (lambda r: r.progress.run(None), TypeError, "name"),
    ],
)
def test_bad_input_raises_at_the_call_naming_the_argument(call, error, named) -> None:
    progress, sink = memory()
    run = progress.run("bad input")
    with pytest.raises(error, match=re.escape(named)):
        call(run)


@pytest.mark.parametrize(
    ("timeout", "error"),
    [(math.inf, ValueError), (math.nan, ValueError), (-1, ValueError)]
    + [(None, TypeError), ("1", TypeError), (True, TypeError)],
)
def test_a_bad_flush_or_close_timeout_is_refused_naming_it(timeout, error) -> None:
    progress, sink = memory()
    for call in (progress.flush, progress.close):
        with pytest.raises(error, match="timeout"):
            call(timeout)
    assert progress.flush(0.5) is True
    progress.close(timeout=0)


@pytest.mark.parametrize(
    ("kw", "error", "named"),
    [
        ({"interval": 0}, ValueError, "interval"),
        ({"interval": math.nan}, ValueError, "interval"),
        ({"interval": "1"}, TypeError, "interval"),
        ({"flush_deadline": -1}, ValueError, "flush_deadline"),
        ({"flush_deadline": math.inf}, ValueError, "flush_deadline"),
        ({"flush_deadline": None}, TypeError, "flush_deadline"),
    ],
)
def test_a_bad_interval_or_flush_deadline_is_refused_naming_it(kw, error, named) -> None:
    with pytest.raises(error, match=named):
        herald.Progress([herald.Target.hidden()], **kw)


def test_bad_targets_are_refused(tmp_path) -> None:
    with pytest.raises(TypeError, match="path"):
        herald.Target.json_file(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="path: cannot open"):
        herald.Target.json_file(tmp_path / "no such dir" / "p.jsonl")
    with pytest.raises(ValueError, match="url"):
        herald.Target.hub("127.0.0.1:7311")
    with pytest.raises(TypeError, match="sink"):
        herald.Target.sink(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="sink"):
        herald.Target.memory(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="out"):
        herald.Target.json_writer(object())
    with pytest.raises(TypeError, match="targets"):
        herald.Progress(["stderr"])  # type: ignore[list-item]


def test_an_exception_fails_the_item_then_the_stage_then_the_run() -> None:
    progress, sink = memory()
    with (
        pytest.raises(KeyError, match="row 7"),
        progress.run("etl") as run,
        run.stage("load", total=10) as stage,
    ):
        for row in stage.iter(range(10)):
            if row == 6:
                raise KeyError("row 7")
    events = sink.events
    kinds = [e["event"] for e in events]
    items = [(e["event"], e["item"], e.get("status")) for e in events if "item" in e]
    assert items == [
        (event, str(k), status)
        for k in range(1, 8)
        for event, status in (
            ("item.started", None),
            ("item.finished", "succeeded" if k < 7 else "failed"),
        )
    ]
    failed_item = of(sink, "item.finished")[-1]
    assert failed_item["error"] == "KeyError: 'row 7'"
    stage_end = next(e for e in events if e["event"] == "stage.finished")
    assert (stage_end["status"], stage_end["error"]) == ("failed", "KeyError: 'row 7'")
    end = events[-1]
    assert (end["event"], end["status"], end["error"]) == (
        "run.finished",
        "failed",
        "KeyError: 'row 7'",
    )
    order = [kinds.index(k) for k in ("item.finished", "stage.finished", "run.finished")]
    assert order == sorted(order)
    progress_done = [e["done"] for e in events if e["event"] == "progress"]
    assert progress_done[-1] == 6


def test_an_exception_without_a_stage_block_still_fails_the_open_stage() -> None:
    progress, sink = memory()
    with pytest.raises(RuntimeError), progress.run("etl") as run:
        stage = run.stage("load")
        for _ in stage.iter([1, 2, 3]):
            raise RuntimeError("boom")
    ends = [(e["event"], e.get("item"), e["status"]) for e in sink.events if "status" in e]
    assert ends == [
        ("item.finished", "1", "failed"),
        ("stage.finished", None, "failed"),
        ("run.finished", None, "failed"),
    ]


def test_iter_reports_every_element_as_an_item_in_order() -> None:
    """Exact, as the Rust SDK's `Stage::iter`: fast and slow elements alike, two loops
    on one stage each counting from 1, a loop left by `break` and the next one."""
    progress, sink = memory()
    with progress.run("exact") as run, run.stage("s") as stage:
        for _ in stage.iter(range(20_000)):
            pass
        for x in stage.iter(range(5)):
            if x == 2:
                progress.flush()  # the sampler sees the loop in the middle
        for x in stage.iter(range(10)):
            if x == 3:
                break
        assert stage.position == 20_000 + 5 + 3
    items = [(e["event"], e["item"], e.get("status")) for e in sink.events if "item" in e]
    expected = []
    for n in (20_000, 5, 4):
        for k in range(1, n + 1):
            expected += [("item.started", str(k), None), ("item.finished", str(k), "succeeded")]
    assert items == expected
    assert of(sink, "progress")[-1]["done"] == 20_000 + 5 + 3
    assert of(sink, "stage.finished")[-1]["status"] == "succeeded"


def test_break_is_not_a_failure() -> None:
    progress, sink = memory()
    with progress.run("first match") as run, run.stage("scan") as stage:
        for x in stage.iter(range(100)):
            if x == 3:
                break
    assert [e["status"] for e in sink.events if e["event"] == "stage.finished"] == ["succeeded"]
    assert all(e["status"] == "succeeded" for e in of(sink, "item.finished"))


def test_items_tools_and_model_calls_fail_naming_the_exception() -> None:
    progress, sink = memory()
    with progress.run("agent") as run:
        with pytest.raises(ValueError), run.item("doc-1"):
            raise ValueError("malformed")
        with pytest.raises(ConnectionError), run.tool("search", {"q": 1}):
            raise ConnectionError("reset")
        with pytest.raises(TimeoutError), run.llm(model="m") as call:
            call.text("partial")
            raise TimeoutError("stream stalled")
    assert of(sink, "item.finished")[0]["error"] == "ValueError: malformed"
    assert of(sink, "tool.finished")[0]["error"] == "ConnectionError: reset"
    response = of(sink, "llm.response")[0]
    assert (response["stop_reason"], response["error"]) == ("error", "TimeoutError: stream stalled")
    assert "ttft_s" in response
    assert sink.events[-1]["status"] == "succeeded"


def test_a_heartbeat_guard_beats_only_while_the_run_is_silent() -> None:
    progress, sink = memory(interval=0.01)
    with progress.run("slow call") as run:
        with run.heartbeat(every=0.05, note="waiting on the model"):
            wait_until(lambda: len(of(sink, "heartbeat")) >= 3, what="three heartbeats")
        progress.flush()
        after = len(of(sink, "heartbeat"))
        run.info("back")
        progress.flush()
        assert len(of(sink, "heartbeat")) == after
    beats = of(sink, "heartbeat")
    assert {b["note"] for b in beats} == {"waiting on the model"}
    assert [b["elapsed_s"] for b in beats] == sorted(b["elapsed_s"] for b in beats)


def test_sub_runs_name_their_parent_and_current_run_follows_with() -> None:
    progress, sink = memory()
    outside = herald.current_run()  # an open run of another test, or None
    with progress.run("agent") as run:
        assert herald.current_run() is run
        with run.child("sub-agent") as sub:
            assert herald.current_run() is sub
        other = progress.run("explicit", parent=run.id)
        other.finish()
        assert herald.current_run() is run
    assert herald.current_run() is outside
    parents = {e["run"]: e.get("parent") for e in of(sink, "run.started")}
    assert parents == {run.id: None, sub.id: run.id, other.id: run.id}


def test_the_logging_handler_turns_records_into_log_events() -> None:
    progress, sink = memory()
    logger = logging.getLogger("herald-test")
    logger.setLevel(logging.DEBUG)
    handler = herald.LoggingHandler()
    logger.addHandler(handler)
    try:
        logger.info("before any run")  # dropped: no run open
        with progress.run("logged"):
            logger.debug("d %d", 1)
            logger.info("i")
            logger.warning("w")
            try:
                raise OSError("disk full")
            except OSError:
                logger.exception("write failed")
            logger.critical("c")
    finally:
        logger.removeHandler(handler)
    logs = [(e["level"], e["message"].splitlines()[0]) for e in of(sink, "log")]
    assert logs == [
        ("debug", "d 1"),
        ("info", "i"),
        ("warn", "w"),
        ("error", "write failed"),
        ("error", "c"),
    ]
    assert "OSError: disk full" in of(sink, "log")[3]["message"]
    with pytest.raises(TypeError, match="run"):
        herald.LoggingHandler(run="not a run")  # type: ignore[arg-type]


def test_asyncio_forms_never_hold_the_event_loop() -> None:
    progress, sink = memory()
    ticks = []

    async def ticker(stop: asyncio.Event) -> None:
        while not stop.is_set():
            ticks.append(1)
            await asyncio.sleep(0.001)

    async def main() -> str:
        stop = asyncio.Event()
        task = asyncio.ensure_future(ticker(stop))
        async with progress.run("async agent") as run:
            async with run.stage("calls", total=2) as stage:
                for _ in stage.iter(range(2)):
                    async with run.llm(model="m") as call:
                        call.text("hi")
                        await asyncio.sleep(0.01)
            async with run.tool("search") as tool:
                tool.output = [1]
            async with run.heartbeat(every=1):
                await asyncio.sleep(0)
        await progress.flush_async()
        other = progress.run("finish_async")
        await other.finish_async({"ok": 1})
        stop.set()
        await task
        return run.id

    run_id = asyncio.run(main())
    assert ticks, "the event loop ran beside reporting"
    ends = {e["run"]: e for e in of(sink, "run.finished")}
    assert ends[run_id]["status"] == "succeeded"
    assert [e["event"] for e in sink.events].count("llm.response") == 2
    assert any(e.get("result") == {"ok": 1} for e in ends.values())


def test_an_async_run_left_by_an_exception_fails() -> None:
    progress, sink = memory()

    async def main() -> None:
        async with progress.run("async fail"):
            raise LookupError("no such doc")

    with pytest.raises(LookupError):
        asyncio.run(main())
    end = sink.events[-1]
    assert (end["status"], end["error"]) == ("failed", "LookupError: no such doc")


def test_counting_from_threads_and_a_sink_that_fails() -> None:
    class Broken(herald.Sink):
        def event(self, event: herald.Event) -> None:
            raise OSError("disk gone")

    sink = herald.MemorySink()
    progress = herald.Progress([herald.Target.sink(Broken()), herald.Target.memory(sink)])
    with progress.run("threads") as run, run.stage("s", total=4000) as stage:

        def work() -> None:
            for _ in range(1000):
                stage.inc()

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert progress.stats.sink_errors == 1  # disabled after its first error; others go on
    assert sink.events[-1]["event"] == "run.finished"
    # `+=` on an int is not split by a thread switch on CPython 3.10+; 3.9 may lose counts.
    done = of(sink, "progress")[-1]["done"]
    assert done == 4000 if sys.version_info >= (3, 10) else 0 < done <= 4000


def test_a_hidden_reporter_reports_nothing_and_starts_no_thread() -> None:
    before = threading.active_count()
    progress = herald.Progress.hidden()
    with progress.run("quiet") as run, run.stage("s") as stage:
        for _ in stage.iter(range(10)):
            stage.set_message("m")
    assert threading.active_count() == before
    assert progress.flush()


def test_a_run_left_open_is_failed_at_close() -> None:
    progress, sink = memory()
    run = progress.run("forgotten")
    progress.close()
    end = sink.events[-1]
    assert (end["run"], end["status"], end["error"]) == (
        run.id,
        "failed",
        "the program exited with the run open",
    )


def test_escape_controls_matches_the_rust_sdk() -> None:
    assert herald.escape_controls("a\x1b]0;pwned\x07b") == "a\\x1b]0;pwned\\x07b"
    assert herald.escape_controls("two\nlines") == "two\\nlines"
    assert herald.escape_controls("abc\u202efed") == "abc\\u{202e}fed"
    assert herald.escape_controls("déjà vu · 日本") == "déjà vu · 日本"
    assert herald.escape_controls("\x9b") == "\\u{9b}"


def test_items_and_calls_left_open_fail_when_their_run_ends() -> None:
    progress, sink = memory()
    with progress.run("careless") as run:
        run.item("doc-1")
        run.tool("search", {"q": 1})
        run.llm(model="m").text("half an answer")
        done = run.tool("fetch")
        done.finish({"ok": 1})
    ends = {e["event"]: e for e in sink.events if e["event"] in ("item.finished", "llm.response")}
    assert ends["item.finished"]["error"] == "left unfinished when the run ended"
    assert ends["llm.response"]["stop_reason"] == "error"
    tools = {e["tool"]: (e["status"], e.get("error")) for e in of(sink, "tool.finished")}
    assert tools == {
        "search": ("failed", "left unfinished when the run ended"),
        "fetch": ("succeeded", None),
    }
    assert sink.events[-1]["status"] == "succeeded"


def test_println_without_bars_goes_to_stderr_as_it_is(capsys) -> None:
    progress, _ = memory()
    progress.println("plain line")
    assert capsys.readouterr().err == "plain line\n"
    with pytest.raises(TypeError, match="line"):
        progress.println(3)  # type: ignore[arg-type]


def test_weights_travel_with_items_stages_and_ticks() -> None:
    """Units of unequal size: the stage's whole weight in `stage.started`, each item's in
    its `item.finished` and in the stage's weight done, as the Rust SDK sends them."""
    progress, sink = memory()
    with progress.run("copy") as run, run.stage("files", total=3, total_weight=100) as stage:
        with stage.item("big.iso", weight=70):
            stage.inc()
        with run.item("small.txt", stage="files") as item:
            item.set_weight(10)
            stage.inc()
        stage.inc_by(1, 25)  # beyond the total: the total rises to the weight done
        assert stage.weight_done == 105
        progress.flush()
    started = of(sink, "stage.started")[0]
    assert started["total_weight"] == 100.0
    weights = {e["item"]: e.get("weight") for e in of(sink, "item.finished")}
    assert weights == {"big.iso": 70.0, "small.txt": 10.0}
    last = of(sink, "progress")[-1]
    assert (last["done"], last["done_weight"], last["total_weight"]) == (3, 105.0, 105.0)
    # a stage that weighs nothing says nothing of weight
    with progress.run("plain") as run, run.stage("s", total=2) as stage:
        stage.inc(2)
    plain = [e for e in of(sink, "progress") if e["run"] == run.id]
    assert plain and all("done_weight" not in e and "total_weight" not in e for e in plain)


def test_an_item_s_weight_goes_to_its_own_stage_not_a_later_one_of_that_name() -> None:
    progress, _ = memory()
    with progress.run("copy") as run:
        first = run.stage("files")
        late = first.item("late.iso", weight=9)
        first.finish()
        with run.stage("files") as second:
            late.finish()  # its stage is over: the weight goes to no other
            assert second.weight_done == 0
            with run.item("now.txt", stage="files", weight=4):
                pass
            assert second.weight_done == 4


def test_a_refused_inc_by_counts_nothing() -> None:
    progress, _ = memory()
    with progress.run("copy") as run, run.stage("files") as stage:
        for n, weight in ((-1, 9), (1, -9), (1, "9")):
            with pytest.raises((TypeError, ValueError)):
                stage.inc_by(n, weight)  # type: ignore[arg-type]
        assert (stage.position, stage.weight_done) == (0, 0)


def test_weight_alone_is_sent_before_any_unit_is_done() -> None:
    """A download's bytes as they arrive: the count stays at 0, the weight moves, and the
    ticks say so (throttled in time, as any count)."""
    progress, sink = memory(interval=0.01)
    with progress.run("download") as run, run.stage("fetch", total=1, total_weight=1000) as stage:
        stage.inc_weight(400)
        wait_until(
            lambda: any(e.get("done_weight") == 400.0 for e in of(sink, "progress")),
            what="a tick with the bytes so far",
        )
        stage.inc_by(1, 600)
    ticks = [(e["done"], e.get("done_weight")) for e in of(sink, "progress")]
    assert (0, 400.0) in ticks and ticks[-1] == (1, 1000.0)
