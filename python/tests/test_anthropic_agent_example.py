"""python/examples/anthropic_agent.py, run as a program against the local provider
replaying the recorded turns of `herald demo --llm` (crates/herald/tests/fixtures/llm/demo/):
its JSON Lines, checked against the protocol's schema, and the state a real hub folds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from llm_server import LlmServer, sse

from conftest import ROOT, SRC

EXAMPLE = ROOT / "python" / "examples" / "anthropic_agent.py"


@pytest.fixture
def server():
    s = LlmServer()
    # A tool call, a tool that does not exist, then the answer.
    s.reply(
        sse("demo/anthropic_lookup.sse"),
        sse("demo/anthropic_unknown_tool.sse"),
        sse("demo/anthropic_answer.sse"),
    )
    yield s
    s.close()


def run_example(server: LlmServer, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("HERALD_", "ANTHROPIC_"))}
    full.update(
        PYTHONPATH=str(SRC),
        ANTHROPIC_BASE_URL=server.url,
        ANTHROPIC_API_KEY="sk-test",
        AGENT_MODEL="claude-test",
        **env,
    )
    if "HERALD_BIN" in os.environ:
        full["HERALD_BIN"] = os.environ["HERALD_BIN"]
    return subprocess.run(
        [sys.executable, str(EXAMPLE)], env=full, capture_output=True, text=True, timeout=60
    )


ANSWER = (
    "Three risks stand out: late supplier deliveries, an unsigned amendment, "
    "and invoices paid twice."
)


def test_the_agent_example_reports_its_loop_and_model_calls(server, tmp_path: Path, validator):
    events_file = tmp_path / "events.jsonl"
    done = run_example(server, HERALD_PROGRESS="json", HERALD_PROGRESS_FILE=str(events_file))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ANSWER

    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    for event in events:
        validator.validate(event)
    kinds = [e["event"] for e in events]
    assert kinds.count("llm.request") == kinds.count("llm.response") == 3
    assert [e["iteration"] for e in events if e["event"] == "agent.iteration"] == [1, 2, 3]

    selected = [(e["tool"], e["input"]) for e in events if e["event"] == "tool.selected"]
    assert selected == [("lookup_document", {"doc": 3}), ("delete_documents", {"all": True})]
    finished = [(e["tool"], e["status"]) for e in events if e["event"] == "tool.finished"]
    assert finished == [("lookup_document", "succeeded"), ("delete_documents", "failed")]
    # The tool calls carry the model's ids, from selection to finish.
    ids = {e["call_id"] for e in events if e["event"].startswith("tool.")}
    assert len(ids) == 2 and all(i.startswith("toolu_") for i in ids)

    responses = [e for e in events if e["event"] == "llm.response"]
    assert [r["stop_reason"] for r in responses] == ["tool_use", "tool_use", "end_turn"]
    assert all(r["model"] == "claude-sonnet-4-5-20250929" for r in responses)
    text = "".join(e["text"] for e in events if e["event"] == "text.delta")
    assert text.endswith(ANSWER)
    (response,) = [e for e in events if e["event"] == "agent.response"]
    assert response["text"] == ANSWER
    assert events[-1]["event"] == "run.finished" and events[-1]["status"] == "succeeded"

    # The model was told what the tools returned.
    second = server.requests[1]["body"]["messages"]
    result = second[-1]["content"][0]
    assert result["type"] == "tool_result"
    assert json.loads(result["content"])["doc"] == 3
    third = server.requests[2]["body"]["messages"]
    assert third[-1]["content"][0]["is_error"] is True


def test_the_hub_folds_what_the_agent_example_reported(server, hub):
    done = run_example(server, HERALD_PROGRESS="none", HERALD_URL=hub.url)
    assert done.returncode == 0, done.stderr
    (run,) = hub.get("/v1/runs")["runs"]
    state = hub.finished_state(run["id"])
    assert state["status"] == "succeeded"
    assert state["llm"]["calls"] == 3 and state["llm"]["in_flight"] == []
    assert state["llm"]["input_tokens"] == 3 * 1520
    assert state["llm"]["model"] == "claude-sonnet-4-5-20250929"
    assert state["agent"]["response"] == ANSWER
    assert state["text"].endswith(ANSWER)
    assert state["tools"]["succeeded"] == 1 and state["tools"]["failed"] == 1
