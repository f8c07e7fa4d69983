"""The examples run, against JSON Lines and against a real hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import ROOT, SRC, Hub

EXAMPLES = ROOT / "python" / "examples"


def run_example(name: str, env: dict) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    full.update(PYTHONPATH=str(SRC), PIPELINE_DELAY="0.001", **env)
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name)], env=full, capture_output=True, text=True, timeout=60
    )


def test_the_pipeline_example_on_a_hub(hub: Hub) -> None:
    out = run_example("pipeline.py", {"HERALD_URL": hub.url, "HERALD_PROGRESS": "none"})
    assert out.returncode == 0, out.stderr
    state = hub.finished_state(out.stdout.strip())
    assert state["status"] == "succeeded"
    assert [s["name"] for s in state["stages"]] == ["fetch", "parse", "summarize"]
    assert [s["done"] for s in state["stages"]] == [24, 24, 2]
    assert state["result"] == {"docs": 24, "words": 72}


def test_the_pipeline_example_failing_names_the_error(tmp_path) -> None:
    path = tmp_path / "p.jsonl"
    out = run_example("pipeline.py", {"HERALD_PROGRESS_FILE": str(path), "PIPELINE_FAIL": "1"})
    assert out.returncode == 1
    assert "ValueError: cannot parse 'contents of doc-13'" in out.stderr
    events = [json.loads(line) for line in path.read_text().splitlines()]
    failed = [(e["event"], e.get("item")) for e in events if e.get("status") == "failed"]
    assert failed == [("item.finished", "13"), ("stage.finished", None), ("run.finished", None)]
    assert events[-1]["error"] == "ValueError: cannot parse 'contents of doc-13'"


def test_the_capture_tqdm_example(tmp_path, validator) -> None:
    path = tmp_path / "p.jsonl"
    out = run_example("capture_tqdm.py", {"HERALD_PROGRESS_FILE": str(path)})
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in path.read_text().splitlines()]
    for event in events:
        assert not list(validator.iter_errors(event))
    finished = {e["stage"]: e["status"] for e in events if e["event"] == "stage.finished"}
    assert finished == {
        "downloading dataset": "succeeded",
        "loading model": "succeeded",
        "training": "succeeded",
    }
    assert events[-1]["result"] == {"rows": 200, "sum": 19900}
