"""`herald.openai.instrument` on the official `openai` client, sync and async, against a
local server replaying OpenAI's recorded chat completion streams: what herald reports, and
that the program sees exactly what the bare client shows it."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from llm_server import (
    Capture,
    LlmServer,
    Reply,
    error_json,
    fixture,
    raised,
    reported_per_chunking,
    run_program,
    sse,
)

import herald
import herald.openai
from herald import _llmwire

MESSAGES = [{"role": "user", "content": "What is the weather in Boston?"}]
ARGS = {"model": "gpt-test", "messages": MESSAGES}
STREAM = {"stream": True, "stream_options": {"include_usage": True}}


def client(server: LlmServer, mode: str, **kw: Any) -> Any:
    kw.setdefault("max_retries", 0)
    cls = openai.OpenAI if mode == "sync" else openai.AsyncOpenAI
    return cls(api_key="sk-test", base_url=server.url + "/v1", **kw)


def both(server: LlmServer, cap: Capture, mode: str, reply: Any, program: Any, **kw: Any) -> Any:
    """Runs `program` on the bare client, then on an instrumented one, each against the
    same reply; asserts they saw the same, and returns it."""
    server.reply(reply())
    bare = run_program(mode, program, client(server, mode))
    server.reply(reply())
    c = herald.openai.instrument(client(server, mode), cap.run, **kw)
    seen = run_program(mode, program, c)
    assert seen == bare
    assert server.requests[0]["body"] == server.requests[1]["body"]
    return seen


def create_sync(c: Any) -> Any:
    return [chunk.model_dump() for chunk in c.chat.completions.create(**ARGS, **STREAM)]


async def create_async(c: Any) -> Any:
    return [chunk.model_dump() async for chunk in await c.chat.completions.create(**ARGS, **STREAM)]


def whole_sync(c: Any) -> Any:
    return c.chat.completions.create(**ARGS).model_dump()


async def whole_async(c: Any) -> Any:
    return (await c.chat.completions.create(**ARGS)).model_dump()


def helper_sync(c: Any) -> Any:
    with c.chat.completions.stream(**ARGS) as stream:
        for _ in stream:
            pass
        return stream.get_final_completion().model_dump()


async def helper_async(c: Any) -> Any:
    async with c.chat.completions.stream(**ARGS) as stream:
        async for _ in stream:
            pass
        return (await stream.get_final_completion()).model_dump()


CREATE = (create_sync, create_async)
WHOLE = (whole_sync, whole_async)
HELPER = (helper_sync, helper_async)


def request(provider: str = "openai") -> dict:
    return {"event": "llm.request", "call_id": "llm-1", "provider": provider, "model": "gpt-test"}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_streamed_answer_reports_its_text_and_usage(server, cap, mode):
    seen = both(server, cap, mode, lambda: sse("openai/text.sse"), CREATE)
    assert not raised(seen)
    words = ["Hello", "!", " How", " can", " I", " help", " you", " today", "?"]
    assert cap.events() == [
        request(),
        *({"event": "text.delta", "text": w, "call_id": "llm-1"} for w in words),
        {
            "event": "llm.response",
            "call_id": "llm-1",
            "model": "gpt-4o-2024-05-13",
            "stop_reason": "stop",
            "input_tokens": 13,
            "output_tokens": 10,
            "ttft": True,
        },
    ]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("program", [CREATE, HELPER], ids=["create-stream", "completions.stream"])
def test_tool_call_deltas_become_one_tool_selected(server, cap, mode, program):
    seen = both(server, cap, mode, lambda: sse("openai/tool_calls.sse"), program)
    assert not raised(seen)
    assert cap.events() == [
        request(),
        {
            "event": "tool.selected",
            "call_id": "call_9ctHOJqO3bYrpm2A6S7nHd5k",
            "tool": "get_current_weather",
            "input": {"location": "Boston, MA"},
        },
        {
            "event": "llm.response",
            "call_id": "llm-1",
            "model": "gpt-4-turbo-2024-04-09",
            "stop_reason": "tool_calls",
            "input_tokens": 83,
            "output_tokens": 17,
            "ttft": True,
        },
    ]


def test_parallel_tool_calls_are_reported_in_order(server, cap):
    seen = both(server, cap, "sync", lambda: sse("openai/parallel_tool_calls.sse"), CREATE)
    assert not raised(seen)
    selected = [e for e in cap.events() if e["event"] == "tool.selected"]
    assert selected == [
        {
            "event": "tool.selected",
            "call_id": "call_mKZvGqJ5yS9hB1dLw1mCUlLr",
            "tool": "get_weather",
            "input": {"location": "Paris"},
        },
        {
            "event": "tool.selected",
            "call_id": "call_3xHvT0mPqX8cC0N2pQ7yRk1S",
            "tool": "get_time",
            "input": {"tz": "Europe/Paris"},
        },
    ]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_answer_not_streamed_is_reported_whole(server, cap, mode):
    def reply() -> Reply:
        return Reply(fixture("openai/tool_calls_completion.json"), content_type="application/json")

    seen = both(server, cap, mode, reply, WHOLE, provider="vllm")
    assert seen["choices"][0]["finish_reason"] == "tool_calls"
    assert cap.events() == [
        request("vllm"),
        {
            "event": "tool.selected",
            "call_id": "call_abc123",
            "tool": "get_current_weather",
            "input": {"location": "Boston, MA"},
        },
        {
            "event": "llm.response",
            "call_id": "llm-1",
            "model": "gpt-4o-2024-08-06",
            "stop_reason": "tool_calls",
            "input_tokens": 82,
            "output_tokens": 17,
            "ttft": True,
        },
    ]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_error_chunk_mid_stream_fails_the_call_naming_it(server, cap, mode):
    seen = both(server, cap, mode, lambda: sse("openai/error_after_delta.sse"), CREATE)
    assert raised(seen) and seen[1] == "APIError"
    assert cap.events() == [
        request(),
        {"event": "text.delta", "text": "The report", "call_id": "llm-1"},
        {
            "event": "llm.response",
            "call_id": "llm-1",
            "model": "gpt-4o-2024-08-06",
            "stop_reason": "error",
            "error": "server_error: The server had an error while processing your request."
            " Sorry about that!",
            "ttft": True,
        },
    ]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_rate_limit_fails_the_call_naming_the_code(server, cap, mode):
    seen = both(server, cap, mode, lambda: error_json("openai/rate_limited.json", 429), CREATE)
    assert seen[:2] == ("raised", "RateLimitError")
    events = cap.events()
    assert events == [
        request(),
        {
            "event": "llm.response",
            "call_id": "llm-1",
            "stop_reason": "error",
            "error": "rate_limit_exceeded: Rate limit reached for gpt-4o in organization "
            "org-abc123 on requests per min (RPM): Limit 500, Used 500, Requested 1. Please "
            "try again in 120ms. (HTTP 429)",
            "ttft": False,
        },
    ]


def test_an_error_page_that_is_not_json_is_named_by_its_status(server, cap):
    c = herald.openai.instrument(client(server, "sync"), cap.run)
    server.reply(Reply(b"", status=502, content_type="text/html"))
    with pytest.raises(openai.InternalServerError):
        create_sync(c)
    assert cap.events()[-1]["error"] == "Bad Gateway (HTTP 502)"


def test_openai_and_anthropic_share_one_http_client(server, cap):
    """Both instrumented on one HTTP client: each endpoint is read in its own format."""
    import anthropic
    import httpx2

    import herald.anthropic

    http = httpx2.Client()
    o = herald.openai.instrument(
        openai.OpenAI(api_key="k", base_url=server.url + "/v1", http_client=http), cap.run
    )
    a = herald.anthropic.instrument(
        anthropic.Anthropic(api_key="k", base_url=server.url, http_client=http), cap.run
    )
    server.reply(sse("openai/text.sse"), sse("anthropic/text.sse"))
    create_sync(o)
    list(a.messages.create(model="claude-test", max_tokens=9, messages=MESSAGES, stream=True))
    providers = [e["provider"] for e in cap.events() if e["event"] == "llm.request"]
    stops = [e["stop_reason"] for e in cap.events() if e["event"] == "llm.response"]
    assert (providers, stops) == (["openai", "anthropic"], ["stop", "end_turn"])


def test_bad_arguments_name_the_argument(server, cap):
    with pytest.raises(TypeError, match="client must be an openai.OpenAI"):
        herald.openai.instrument("client", cap.run)
    with pytest.raises(TypeError, match="run must be a herald Run, not NoneType"):
        herald.openai.instrument(client(server, "sync"), None)
    with pytest.raises(ValueError, match="provider must not be empty"):
        herald.openai.instrument(client(server, "sync"), cap.run, provider="")
    with pytest.raises(TypeError, match="provider must be a str, not int"):
        herald.openai.instrument(client(server, "sync"), cap.run, provider=1)


@pytest.mark.parametrize(
    "name", ["text.sse", "tool_calls.sse", "parallel_tool_calls.sse", "error_after_delta.sse"]
)
def test_every_chunking_and_line_ending_is_reported_alike(cap, name):
    calls = reported_per_chunking(cap, "openai", fixture(f"openai/{name}"), _llmwire.OpenAiWire)
    assert len(calls) == 45
    assert all(call == calls[0] for call in calls), name
    assert calls[0][-1]["event"] == "llm.response"
