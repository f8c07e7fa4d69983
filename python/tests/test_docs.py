"""The Python examples of docs/python.md and of the README run as they are written, with
the names they leave to the reader (`urls`, `fetch`, ...) defined here, and report what
they say they report."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from llm_server import LlmServer, sse

import herald
from conftest import ROOT

DOC = ROOT / "docs" / "python.md"
README = ROOT / "README.md"
PACKAGE_README = ROOT / "python" / "README.md"


def python_blocks(path: Path) -> list[str]:
    """The ```python blocks of a Markdown file, in order."""
    return re.findall(r"^```python\n(.*?)^```$", path.read_text(encoding="utf-8"), re.S | re.M)


def test_every_python_block_is_run_here() -> None:
    # A block added to a doc must be added to these tests, or this fails.
    assert len(python_blocks(DOC)) == 2
    assert len(python_blocks(README)) == 1
    assert len(python_blocks(PACKAGE_README)) == 2


def finished_items(events: list[dict], stage: str) -> list[str]:
    return [e["item"] for e in events if e["event"] == "item.finished" and e["stage"] == stage]


def run_block(code: str, names: dict[str, Any], path: Path, monkeypatch: Any) -> list[dict]:
    """Runs `code` with `names` defined and herald's environment pointing at a JSON Lines
    file, then returns the events written there."""
    for var in ("HERALD_URL", "HERALD_TOKEN", "HERALD_RUN", "HERALD_PROGRESS_FD"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HERALD_PROGRESS", "auto")
    monkeypatch.setenv("HERALD_PROGRESS_FILE", str(path))
    scope = dict(names)
    exec(compile(code, str(path), "exec"), scope)  # noqa: S102 - the doc's own code
    for value in scope.values():
        if isinstance(value, herald.Progress):
            value.close()
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_the_docs_reporting_example_runs(tmp_path: Path, monkeypatch: Any) -> None:
    urls = [f"https://example.com/{i}" for i in range(5)]
    docs = [SimpleNamespace(id=f"doc-{i}", title=f"Doc {i}") for i in range(3)]
    fetched: list[str] = []
    events = run_block(
        python_blocks(DOC)[0],
        {
            "herald": herald,
            "urls": urls,
            "fetch": fetched.append,
            "docs": docs,
            "classify": lambda doc: None,
            "slow_call": lambda: None,
        },
        tmp_path / "progress.jsonl",
        monkeypatch,
    )
    assert fetched == urls
    end = events[-1]
    assert (end["event"], end["status"], end["result"]) == (
        "run.finished",
        "succeeded",
        {"docs": 3},
    )
    fetch_items = [
        e["item"] for e in events if e["event"] == "item.finished" and e["stage"] == "fetch"
    ]
    assert fetch_items == ["1", "2", "3", "4", "5"]
    classify_items = [
        e["item"] for e in events if e["event"] == "item.finished" and e["stage"] == "classify"
    ]
    assert classify_items == ["doc-0", "doc-1", "doc-2"]
    stages = [(e["stage"], e["status"]) for e in events if e["event"] == "stage.finished"]
    assert stages == [("fetch", "succeeded"), ("classify", "succeeded")]


def test_the_readme_example_runs(tmp_path: Path, monkeypatch: Any) -> None:
    urls = ["https://example.com/a", "https://example.com/b"]
    pages: list[str] = []
    events = run_block(
        python_blocks(README)[0],
        {"urls": urls, "fetch": lambda url: url.upper(), "pages": pages},
        tmp_path / "progress.jsonl",
        monkeypatch,
    )
    assert pages == [u.upper() for u in urls]
    kinds = [e["event"] for e in events]
    assert kinds.count("item.finished") == 2
    response = next(e for e in events if e["event"] == "llm.response")
    assert (response["input_tokens"], response["output_tokens"]) == (812, 64)
    end = events[-1]
    assert (end["status"], end["result"]) == ("succeeded", {"pages": 2})


def test_the_package_readme_examples_run(tmp_path: Path, monkeypatch: Any) -> None:
    import anthropic
    import openai

    blocks = python_blocks(PACKAGE_README)
    fetched: list[str] = []
    events = run_block(
        blocks[0],
        {"urls": ["a", "b", "c"], "fetch": fetched.append},
        tmp_path / "p.jsonl",
        monkeypatch,
    )
    assert fetched == ["a", "b", "c"]
    assert finished_items(events, "fetch") == ["1", "2", "3"]
    assert [e["stage"] for e in events if e["event"] == "stage.finished"] == ["fetch", "summarize"]
    assert (events[-1]["status"], events[-1]["result"]) == ("succeeded", {"summaries": 4})
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    progress = herald.Progress([herald.Target.memory()])
    with progress.run("clients") as run:
        scope = {"anthropic": anthropic, "openai": openai, "run": run}
        exec(compile(blocks[1], str(PACKAGE_README), "exec"), scope)  # noqa: S102
        assert isinstance(scope["claude"], anthropic.Anthropic)
        assert isinstance(scope["gpt"], openai.OpenAI)
    progress.close()


def test_the_docs_anthropic_example_runs(tmp_path: Path, monkeypatch: Any) -> None:
    server = LlmServer()
    try:
        server.reply(sse("anthropic/text.sse"))
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        progress = herald.Progress([herald.Target.json_file(tmp_path / "progress.jsonl")])
        run = progress.run("docs")
        code = python_blocks(DOC)[1]
        scope = {"run": run, "msgs": [{"role": "user", "content": "Hello"}]}
        exec(compile(code, str(DOC), "exec"), scope)  # noqa: S102 - the doc's own code
        run.finish()
        progress.close()
    finally:
        server.close()
    events = [json.loads(x) for x in (tmp_path / "progress.jsonl").read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[:2] == ["run.started", "llm.request"]
    assert "text.delta" in kinds
    response = next(e for e in events if e["event"] == "llm.response")
    assert response["stop_reason"] == "end_turn"
    assert kinds[-1] == "run.finished"
