"""JSON Lines: validated against the protocol's JSON Schema (the checked-in file), in the
Rust SDK's shape, throttled as there; and the targets chosen from the environment."""

from __future__ import annotations

import json
import os
import re

import pytest

import herald
from conftest import run_python

EVERYTHING = """
import asyncio, herald, logging, time
progress = herald.Progress.from_env()
with progress.run("every event", total_steps=2, meta={"k": [1, 2]}) as run:
    run.iteration(1)
    run.system_message("You triage documents.")
    run.history([{"role": "user", "content": "go"}, {"role": "assistant", "content": [1]}])
    with run.stage("fetch", total=3, unit="docs") as stage:
        stage.set_message("downloading a.tar.gz")
        for _ in stage.iter(["a", "b", "c"]):
            time.sleep(0.06)
    with run.stage("work") as stage:
        with stage.item("doc-1", label="doc one"):
            stage.inc(2)
        item = run.item("doc-2", stage="work")
        item.skip()
    with run.stage("copy", total=2, unit="files", total_weight=4096) as stage:
        with stage.item("a.bin", weight=4000):
            stage.inc()
        stage.inc_by(1, 96)
    with run.heartbeat(every=0.05, note="thinking"):
        time.sleep(0.3)
    run.beat()
    cid = run.tool_selected("search", {"q": "x"})
    with run.tool("search", {"q": "x"}, call_id=cid, feedback="Searching") as call:
        call.feedback("Reading page 2")
        call.progress(1, 2, unit="pages")
        call.progress(2)
        call.output = {"hits": 3}
    try:
        with run.tool("fetch", "http://x") as call:
            raise TimeoutError("no answer in 10 s")
    except TimeoutError:
        pass
    with run.llm(model="m-1", provider="test") as llm:
        llm.text("héllo \\u202e\\n")
        llm.usage(input_tokens=10, output_tokens=2)
        llm.set_model("m-1-2026")
    llm2 = run.llm(model="m-1")
    llm2.fail("overloaded_error: Overloaded (HTTP 529)")
    run.text("free text")
    run.preparing_response()
    run.response("done", iteration=1)
    run.custom("deploy", {"env": "prod", "n": 1.5})
    with run.child("sub-agent") as sub:
        sub.info("from the child")
    logging.getLogger("x").addHandler(herald.LoggingHandler())
    logging.getLogger("x").warning("careful: %s", "disk")
    run.debug("d"); run.info("i"); run.warn("w"); run.error("e")
    run.finish({"ok": True, "pi": 3.25})
"""


def _lines(path) -> list:
    return path.read_text(encoding="utf-8").splitlines()


def test_every_event_validates_against_the_protocols_schema(tmp_path, validator) -> None:
    path = tmp_path / "p.jsonl"
    out = run_python(EVERYTHING, env={"HERALD_PROGRESS_FILE": str(path), "HERALD_PROGRESS": "none"})
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    lines = _lines(path)
    field_order = {b["title"]: b["properties"] for b in validator.schema["oneOf"]}
    kinds = set()
    for line in lines:
        assert line.startswith('{"v":1,"event":"'), line
        event = json.loads(line)
        errors = list(validator.iter_errors(event))
        assert not errors, (line, [e.message for e in errors])
        kinds.add(event["event"])
        # the envelope first, then the type's fields, in the Rust SDK's order (the
        # schema's, which is generated from the Rust types)
        keys = list(event)
        envelope = [k for k in ("v", "event", "run", "seq", "ts", "id", "parent") if k in event]
        assert keys[: len(envelope)] == envelope
        if not event["event"].startswith("custom."):
            order = list(field_order[event["event"]])
            rest = keys[len(envelope) :]
            assert rest == sorted(rest, key=order.index), (event["event"], rest)
    for kind in [
        "run.started", "run.finished", "stage.started", "stage.finished", "progress",
        "item.started", "item.finished", "log", "heartbeat", "agent.iteration",
        "agent.history", "agent.system_message", "llm.request", "llm.response",
        "text.delta", "tool.selected", "tool.started", "tool.finished",
        "agent.preparing_response", "agent.response", "custom.deploy",
    ]:  # fmt: skip
        assert kind in kinds, kind
    # per run: seq dense from 1, ts never going back, one run.started and one finish
    by_run: dict = {}
    for line in lines:
        event = json.loads(line)
        by_run.setdefault(event["run"], []).append(event)
    assert len(by_run) == 2
    for events in by_run.values():
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
        assert events[0]["event"] == "run.started"
        assert events[-1]["event"] == "run.finished"
    child = next(evs for evs in by_run.values() if evs[0]["name"] == "sub-agent")
    parent = next(evs for evs in by_run.values() if evs[0]["name"] == "every event")
    assert {e["parent"] for e in child} == {parent[0]["run"]}
    events = parent
    # numbers rounded as the Rust SDK rounds them
    for e in events:
        for key in ("elapsed_s", "ttft_s", "silent_for_s", "eta_s"):
            if key in e:
                assert round(e[key], 3) == e[key]
        if "percent" in e:
            assert round(e["percent"], 1) == e["percent"]
    failed_tool = next(
        e for e in events if e["event"] == "tool.finished" and e["status"] == "failed"
    )
    assert failed_tool["error"] == "TimeoutError: no answer in 10 s"
    responses = [e for e in events if e["event"] == "llm.response"]
    assert responses[0]["model"] == "m-1-2026"
    assert "stop_reason" not in responses[0]
    assert (responses[0]["input_tokens"], responses[0]["output_tokens"]) == (10, 2)
    assert responses[1]["stop_reason"] == "error"
    assert responses[1]["error"] == "overloaded_error: Overloaded (HTTP 529)"
    assert any(e["event"] == "heartbeat" and e.get("note") == "thinking" for e in events)
    log = next(e for e in events if e["event"] == "log" and "careful" in e["message"])
    assert (log["level"], log["message"]) == ("warn", "careful: disk")
    fetch_items = [e for e in events if e["event"] == "item.finished" and e["stage"] == "fetch"]
    assert [e["item"] for e in fetch_items] == ["1", "2", "3"]
    # text is kept exact in JSON (no escaping of the producer's text)
    delta = next(e for e in events if e["event"] == "text.delta" and e.get("call_id"))
    assert delta["text"] == "héllo \u202e\n"
    assert "héllo" in path.read_text(encoding="utf-8")


def test_ticks_are_throttled_as_the_rust_sdks() -> None:
    sink = herald.MemorySink(policy=herald.SinkPolicy())
    progress = herald.Progress([herald.Target.memory(sink)], interval=0.01)
    with progress.run("throttled") as run, run.stage("count", total=1000) as stage:
        for _ in range(1000):
            stage.inc(1)
            if stage.position % 10 == 0:
                progress.flush()  # lets the loop sample 100 different counts
    ticks = [e for e in sink.events if e["event"] == "progress"]
    percents = [e["percent"] for e in ticks]
    assert percents[-1] == 100.0
    assert 5 <= len(ticks) <= 11, percents
    assert all(b - a >= 10.0 for a, b in zip(percents, percents[1:])), percents


def test_the_last_count_goes_out_before_the_stage_finishes() -> None:
    sink = herald.MemorySink(policy=herald.SinkPolicy())
    progress = herald.Progress([herald.Target.memory(sink)])
    with progress.run("last count") as run, run.stage("s", total=1000) as stage:
        stage.inc(995)
        progress.flush()
        stage.inc(2)
    kinds = [(e["event"], e.get("done")) for e in sink.events]
    end = kinds.index(("stage.finished", None))
    assert kinds[end - 1] == ("progress", 997)


@pytest.mark.parametrize(
    ("env", "stderr_json"),
    [
        ({"HERALD_PROGRESS": "json"}, True),
        ({"HERALD_PROGRESS": "auto"}, True),  # stderr is a pipe here
        ({}, True),
        ({"HERALD_PROGRESS": "none"}, False),
        ({"HERALD_PROGRESS": ""}, True),  # empty counts as unset
    ],
)
def test_herald_progress_chooses_stderr(env: dict, stderr_json: bool) -> None:
    code = """
import herald
with herald.Progress.from_env().run("r") as run:
    print("the result")
"""
    out = run_python(code, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "the result\n"  # progress never goes to stdout
    events = [json.loads(line) for line in out.stderr.splitlines()]
    if stderr_json:
        assert [e["event"] for e in events] == ["run.started", "run.finished"]
    else:
        assert events == []


def test_auto_with_a_file_leaves_stderr_to_the_program(tmp_path) -> None:
    path = tmp_path / "p.jsonl"
    out = run_python(
        "import herald\nwith herald.Progress.from_env().run('r'): pass",
        env={"HERALD_PROGRESS_FILE": str(path)},
    )
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert [json.loads(x)["event"] for x in _lines(path)] == ["run.started", "run.finished"]
    # appended to, not overwritten
    run_python("import herald\nwith herald.Progress.from_env().run('r'): pass", env={
        "HERALD_PROGRESS_FILE": str(path)
    })  # fmt: skip
    assert len(_lines(path)) == 4


def test_herald_progress_fd_writes_to_an_inherited_descriptor(tmp_path) -> None:
    read, write = os.pipe()
    out = run_python(
        "import herald\nwith herald.Progress.from_env().run('fd'): pass",
        env={"HERALD_PROGRESS_FD": str(write), "HERALD_PROGRESS": "none"},
        pass_fds=(write,),
    )
    os.close(write)
    with os.fdopen(read) as f:
        lines = f.read().splitlines()
    assert out.returncode == 0, out.stderr
    assert [json.loads(x)["event"] for x in lines] == ["run.started", "run.finished"]


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"HERALD_PROGRESS": "sideways"}, "HERALD_PROGRESS"),
        ({"HERALD_PROGRESS_FD": "three"}, "HERALD_PROGRESS_FD"),
        ({"HERALD_PROGRESS_FD": "97"}, "file descriptor 97"),
        ({"HERALD_URL": "localhost:7311"}, "HERALD_URL"),
        ({"HERALD_PROGRESS_FILE": "/nonexistent/dir/p.jsonl"}, "/nonexistent/dir/p.jsonl"),
    ],
)
def test_bad_settings_are_named(env: dict, named: str) -> None:
    out = run_python("import herald\nherald.Progress.from_env()", env=env)
    assert out.returncode != 0
    assert "ValueError" in out.stderr and named in out.stderr, out.stderr


def test_a_terminal_gets_bars_with_the_producers_text_escaped(tmp_path) -> None:
    import pty
    import subprocess
    import sys

    from conftest import SRC

    primary, secondary = pty.openpty()
    code = """
import herald, time
progress = herald.Progress.from_env()
with progress.run("evil\\x1b]0;pwned\\x07name") as run:
    with run.stage("s\\u202etage", total=3) as stage:
        for _ in stage.iter(range(3)):
            time.sleep(0.15)
    run.warn("two\\nlines")
    progress.println("a line of the program's own")
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env.update(PYTHONPATH=str(SRC), NO_COLOR="1", HERALD_PROGRESS="auto")
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stderr=secondary, stdout=subprocess.DEVNULL, env=env
    )
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=30) == 0
    os.close(primary)
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert "evil\\x1b]0;pwned\\x07name" in screen
    assert "s\\u{202e}tage" in screen
    assert "two\\nlines" in screen
    assert "a line of the program's own" in screen
    assert "\x1b]0;pwned" not in screen
    assert '{"v":1' not in screen  # bars, not JSON, on a terminal


def test_the_bars_render_stages_counts_and_lines_above() -> None:
    import io

    from herald._sinks import Event
    from herald._terminal import TerminalSink

    out = io.StringIO()
    bars = TerminalSink(out, color=False)

    def feed(event: str, **fields) -> None:
        bars.event(Event(event, "r1", 1, "2026-12-05T19:00:00.000000Z", None, fields))

    feed("run.started", name="triage\x1b[2J")
    feed("stage.started", stage="fetch", total=10, unit="docs")
    feed("progress", stage="fetch", done=5, total=10, unit="docs", elapsed_s=1.0)
    bars.refresh()
    screen = out.getvalue()
    assert "triage\\x1b[2J" in screen and "\x1b[2J" not in screen
    assert "▸ fetch" in screen and " 50%" in screen and "5/10 docs" in screen
    feed("log", level="warn", message="slow\nsource")
    feed("item.finished", item="doc-3", stage="fetch", status="failed", error="bad JSON")
    feed("stage.finished", stage="fetch", status="succeeded", elapsed_s=2.0)
    feed("run.finished", status="succeeded")
    bars.close(0.0)
    lines = [re.sub(r"\x1b\[\d*[A-Z]", "", line) for line in out.getvalue().split("\n")]
    assert "  warn slow\\nsource" in lines
    assert "  ✘ item doc-3: bad JSON" in lines
    assert "  fetch succeeded 5/10 in 2s" in lines
    assert any(line.endswith("✔ triage\\x1b[2J succeeded in 0s") for line in lines)
