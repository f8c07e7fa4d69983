"""`herald.anthropic.instrument` on the official `anthropic` client, sync and async, against
a local server replaying Anthropic's recorded streams: what herald reports, and that the
program sees exactly what the bare client shows it."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
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
import herald.anthropic
from herald import _llmwire

MESSAGES = [{"role": "user", "content": "What is the weather in San Francisco?"}]
ARGS = {"model": "claude-test", "max_tokens": 256, "messages": MESSAGES}
REQUEST = {
    "event": "llm.request",
    "call_id": "llm-1",
    "provider": "anthropic",
    "model": "claude-test",
}


def client(server: LlmServer, mode: str, **kw: Any) -> Any:
    kw.setdefault("max_retries", 0)
    cls = anthropic.Anthropic if mode == "sync" else anthropic.AsyncAnthropic
    return cls(api_key="sk-test", base_url=server.url, **kw)


def both(server: LlmServer, cap: Capture, mode: str, reply: Any, program: Any) -> Any:
    """Runs `program` on the bare client, then on an instrumented one, each against the
    same reply; asserts they saw the same, and returns it."""
    server.reply(reply())
    bare = run_program(mode, program, client(server, mode))
    server.reply(reply())
    seen = run_program(mode, program, herald.anthropic.instrument(client(server, mode), cap.run))
    assert seen == bare
    assert server.requests[0]["body"] == server.requests[1]["body"]
    return seen


# --- the programs: what each does with the client, and what it saw --------------------------


def stream_sync(c: Any) -> Any:
    with c.messages.stream(**ARGS) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    return texts, final.model_dump()


async def stream_async(c: Any) -> Any:
    async with c.messages.stream(**ARGS) as stream:
        texts = [t async for t in stream.text_stream]
        final = await stream.get_final_message()
    return texts, final.model_dump()


def create_sync(c: Any) -> Any:
    return [event.model_dump() for event in c.messages.create(**ARGS, stream=True)]


async def create_async(c: Any) -> Any:
    return [event.model_dump() async for event in await c.messages.create(**ARGS, stream=True)]


def whole_sync(c: Any) -> Any:
    return c.messages.create(**ARGS).model_dump()


async def whole_async(c: Any) -> Any:
    return (await c.messages.create(**ARGS)).model_dump()


STREAM = (stream_sync, stream_async)
CREATE = (create_sync, create_async)
WHOLE = (whole_sync, whole_async)

TOOL_USE_TEXT = [
    "Okay",
    ",",
    " let",
    "'s",
    " check",
    " the",
    " weather",
    " for",
    " San",
    " Francisco",
    ",",
    " CA",
    ":",
]


def tool_use_events() -> list:
    """What tool_use.sse is reported as."""
    return [
        REQUEST,
        *({"event": "text.delta", "text": t, "call_id": "llm-1"} for t in TOOL_USE_TEXT),
        {
            "event": "tool.selected",
            "call_id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            "tool": "get_weather",
            "input": {"location": "San Francisco, CA", "unit": "fahrenheit"},
        },
        {
            "event": "llm.response",
            "call_id": "llm-1",
            "model": "claude-opus-4-1-20250805",
            "stop_reason": "tool_use",
            "input_tokens": 472,
            "output_tokens": 89,
            "ttft": True,
        },
    ]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("program", [STREAM, CREATE], ids=["messages.stream", "create-stream"])
def test_a_streamed_call_reports_its_text_tool_and_usage(server, cap, mode, program):
    seen = both(server, cap, mode, lambda: sse("anthropic/tool_use.sse"), program)
    assert not raised(seen)
    assert cap.events() == tool_use_events()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_call_not_streamed_reports_the_whole_answer(server, cap, mode):
    def reply() -> Reply:
        return Reply(fixture("anthropic/tool_use_message.json"), content_type="application/json")

    seen = both(server, cap, mode, reply, WHOLE)
    assert seen["stop_reason"] == "tool_use"
    assert cap.events() == [
        REQUEST,
        {
            "event": "text.delta",
            "text": "I'll check the current weather in San Francisco for you.",
            "call_id": "llm-1",
        },
        {
            "event": "tool.selected",
            "call_id": "toolu_01A09q90qw90lq917835lq9",
            "tool": "get_weather",
            "input": {"location": "San Francisco, CA", "unit": "celsius"},
        },
        {
            "event": "llm.response",
            "call_id": "llm-1",
            "model": "claude-sonnet-4-5-20250929",
            "stop_reason": "tool_use",
            "input_tokens": 384,
            "output_tokens": 74,
            "ttft": True,
        },
    ]


def test_prompt_cache_tokens_count_as_input(server, cap):
    server.reply(sse("anthropic/cached_prompt.sse"))
    stream_sync(herald.anthropic.instrument(client(server, "sync"), cap.run))
    (response,) = [e for e in cap.events() if e["event"] == "llm.response"]
    assert response["stop_reason"] == "end_turn"
    # 3 uncached + 7 written to + 4 096 read from the cache, as the fixture's last usage says.
    body = fixture("anthropic/cached_prompt.sse").decode()
    assert '"cache_read_input_tokens"' in body
    assert response["input_tokens"] > response["output_tokens"] > 0


def test_thinking_is_not_text_but_counts_as_the_first_token(server, cap):
    # (The documentation's example has no usage in `message_delta`, which
    # `messages.stream()` of this client version cannot take: read the raw events.)
    server.reply(sse("anthropic/thinking.sse"))
    seen = create_sync(herald.anthropic.instrument(client(server, "sync"), cap.run))
    events = cap.events()
    reported = "".join(e["text"] for e in events if e["event"] == "text.delta")
    deltas = [e["delta"] for e in seen if e["type"] == "content_block_delta"]
    assert reported == "".join(d["text"] for d in deltas if d["type"] == "text_delta") != ""
    thinking = "".join(d["thinking"] for d in deltas if d["type"] == "thinking_delta")
    assert thinking and thinking not in reported
    assert events[-1]["ttft"] is True and events[-1]["stop_reason"] == "end_turn"


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("program", [STREAM, CREATE], ids=["messages.stream", "create-stream"])
def test_an_error_event_mid_stream_fails_the_call_naming_it(server, cap, mode, program):
    seen = both(server, cap, mode, lambda: sse("anthropic/error_after_delta.sse"), program)
    # The program sees the client's own exception, as it would without herald.
    assert raised(seen) and seen[1] == "APIStatusError" and "overloaded_error" in seen[2]
    assert cap.events() == [
        REQUEST,
        {"event": "text.delta", "text": "The report", "call_id": "llm-1"},
        {
            "event": "llm.response",
            "call_id": "llm-1",
            "model": "claude-sonnet-4-5-20250929",
            "stop_reason": "error",
            "input_tokens": 12,
            "output_tokens": 1,
            "error": "overloaded_error: Overloaded",
            "ttft": True,
        },
    ]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(
    "name, status, error, exception",
    [
        ("anthropic/overloaded.json", 529, "overloaded_error: Overloaded", "OverloadedError"),
        (
            "anthropic/rate_limited.json",
            429,
            "rate_limit_error: This request would exceed the rate limit for your organization"
            " of 50 requests per minute.",
            "RateLimitError",
        ),
    ],
)
def test_an_http_error_fails_the_call_naming_the_providers_error(
    server, cap, mode, name, status, error, exception
):
    seen = both(server, cap, mode, lambda: error_json(name, status), STREAM)
    assert seen[:2] == ("raised", exception)
    assert cap.events() == [
        REQUEST,
        {
            "event": "llm.response",
            "call_id": "llm-1",
            "stop_reason": "error",
            "error": f"{error} (HTTP {status})",
            "ttft": False,
        },
    ]


def test_an_overloaded_answer_the_client_retries_is_a_failed_call_then_another(server, cap):
    c = herald.anthropic.instrument(client(server, "sync", max_retries=1), cap.run)
    server.reply(
        error_json("anthropic/overloaded.json", 529, headers={"retry-after-ms": "1"}),
        sse("anthropic/tool_use.sse"),
    )
    texts, _ = stream_sync(c)
    assert texts == TOOL_USE_TEXT
    events = cap.events()
    assert [(e["event"], e["call_id"]) for e in events if e["event"].startswith("llm.")] == [
        ("llm.request", "llm-1"),
        ("llm.response", "llm-1"),
        ("llm.request", "llm-2"),
        ("llm.response", "llm-2"),
    ]
    assert events[1]["error"] == "overloaded_error: Overloaded (HTTP 529)"
    assert events[-1]["stop_reason"] == "tool_use"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_text_is_reported_as_it_arrives(server, cap, mode):
    """The first delta is reported while the server still holds back the rest."""
    reply = sse("anthropic/tool_use.sse", hold_after=b'"text":"Okay"}}\n\n')
    server.reply(reply)
    c = herald.anthropic.instrument(client(server, mode), cap.run)

    def first_delta_alone_reported() -> None:
        cap.wait_for(
            lambda evs: any(e["event"] == "text.delta" and e["text"] == "Okay" for e in evs),
            "the first text.delta before the rest of the stream was sent",
        )
        assert not any(e["event"] == "llm.response" for e in cap.sink.events)
        reply.release.set()

    if mode == "sync":
        with c.messages.stream(**ARGS) as stream:
            texts = stream.text_stream
            assert next(texts) == "Okay"
            first_delta_alone_reported()
            assert "".join(texts) == "".join(TOOL_USE_TEXT[1:])
    else:

        async def program() -> None:
            async with c.messages.stream(**ARGS) as stream:
                texts = stream.text_stream
                assert await texts.__anext__() == "Okay"
                first_delta_alone_reported()
                assert "".join([t async for t in texts]) == "".join(TOOL_USE_TEXT[1:])

        asyncio.run(program())
    assert cap.events() == tool_use_events()


def stop_early_sync(c: Any) -> Any:
    with c.messages.stream(**ARGS) as stream:
        for text in stream.text_stream:
            return text


async def stop_early_async(c: Any) -> Any:
    async with c.messages.stream(**ARGS) as stream:
        async for text in stream.text_stream:
            return text


STOP_EARLY = (stop_early_sync, stop_early_async)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_program_that_stops_reading_early_ends_the_call_as_failed(server, cap, mode):
    seen = both(server, cap, mode, lambda: sse("anthropic/tool_use.sse"), STOP_EARLY)
    assert seen == "Okay"
    events = cap.events()
    assert events[-1] == {
        "event": "llm.response",
        "call_id": "llm-1",
        "model": "claude-opus-4-1-20250805",
        "stop_reason": "error",
        "input_tokens": 472,
        "output_tokens": 2,
        "error": "the stream was closed before the model stopped",
        "ttft": True,
    }


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_connection_cut_mid_stream_fails_the_call(server, cap, mode):
    body = fixture("anthropic/tool_use.sse")
    cut = body.index(b"content_block_stop")
    seen = both(server, cap, mode, lambda: sse("anthropic/tool_use.sse", cut=cut), CREATE)
    assert raised(seen)
    response = cap.events()[-1]
    assert response["event"] == "llm.response" and response["stop_reason"] == "error"
    assert "RemoteProtocolError" in response["error"] or "closed" in response["error"]


def test_a_refused_connection_fails_the_call(cap):
    s = LlmServer()
    url = s.url
    s.close()
    c = herald.anthropic.instrument(
        anthropic.Anthropic(api_key="sk-test", base_url=url, max_retries=0), cap.run
    )
    with pytest.raises(anthropic.APIConnectionError):
        c.messages.create(**ARGS)
    events = cap.events()
    assert [e["event"] for e in events] == ["llm.request", "llm.response"]
    assert events[1]["stop_reason"] == "error" and "ConnectError" in events[1]["error"]


def test_other_endpoints_are_not_model_calls(server, cap):
    server.reply(Reply(b'{"input_tokens": 12}', content_type="application/json"))
    c = herald.anthropic.instrument(client(server, "sync"), cap.run)
    assert c.messages.count_tokens(model="claude-test", messages=MESSAGES).input_tokens == 12
    assert server.requests[-1]["path"] == "/v1/messages/count_tokens"
    assert cap.events() == []


def test_copies_are_reported_and_uninstrument_stops_it(server, cap):
    c = herald.anthropic.instrument(client(server, "sync"), cap.run)
    server.reply(sse("anthropic/text.sse"), sse("anthropic/text.sse"))
    stream_sync(c.with_options(timeout=30))
    herald.anthropic.uninstrument(c)
    stream_sync(c)
    assert [e["event"] for e in cap.events() if e["event"].startswith("llm.")] == [
        "llm.request",
        "llm.response",
    ]


def test_instrumenting_again_reports_through_the_new_run(server, cap):
    c = herald.anthropic.instrument(client(server, "sync"), cap.run)
    with cap.progress.run("second") as second:
        herald.anthropic.instrument(c, second)
        server.reply(sse("anthropic/text.sse"))
        stream_sync(c)
    assert cap.progress.flush(10)
    runs = {e["run"] for e in cap.sink.events if e["event"] == "llm.request"}
    assert runs == {second.id}


def test_bad_arguments_name_the_argument(server, cap):
    import openai

    with pytest.raises(TypeError, match="client must be an anthropic.Anthropic"):
        herald.anthropic.instrument(object(), cap.run)
    with pytest.raises(TypeError, match="client must be an anthropic.Anthropic"):
        herald.anthropic.instrument(openai.OpenAI(api_key="k", base_url=server.url), cap.run)
    with pytest.raises(TypeError, match="run must be a herald Run, not str"):
        herald.anthropic.instrument(client(server, "sync"), "my-run")


@pytest.mark.parametrize(
    "name",
    ["text.sse", "tool_use.sse", "thinking.sse", "cached_prompt.sse", "error_after_delta.sse"],
)
def test_every_chunking_and_line_ending_is_reported_alike(cap, name):
    calls = reported_per_chunking(
        cap, "anthropic", fixture(f"anthropic/{name}"), _llmwire.AnthropicWire
    )
    assert len(calls) == 45
    assert all(call == calls[0] for call in calls), name
    assert calls[0][-1]["event"] == "llm.response"


def test_a_silent_call_keeps_the_run_alive_with_heartbeats(server, cap, monkeypatch):
    """While the model has not sent its first token, heartbeats go out for the call."""
    monkeypatch.setattr(_llmwire, "HEARTBEAT_EVERY", 0.2)
    reply = sse("anthropic/tool_use.sse", hold_after=b"event: content_block_start")
    server.reply(reply)
    c = herald.anthropic.instrument(client(server, "sync"), cap.run)
    with c.messages.stream(**ARGS) as stream:
        cap.wait_for(
            lambda evs: any(e["event"] == "heartbeat" for e in evs[1:]),
            "a heartbeat while the model was silent",
        )
        reply.release.set()
        assert list(stream.text_stream) == TOOL_USE_TEXT
    assert cap.events() == tool_use_events()


def test_hostile_events_cost_themselves_alone(cap):
    """Data that is not JSON, fields of the wrong type, a tool input with NaN, a tool
    without a name, an unknown event type: each is skipped or kept as text, and the rest
    of the stream is still reported."""
    lines = [
        b'event: message_start\ndata: {"type":"message_start","message":{"model":["x"],'
        b'"usage":{"input_tokens":-4,"output_tokens":true}}}',
        b"event: content_block_delta\ndata: {not json",
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":7}',
        b'event: something_new\ndata: {"type":"something_new","index":0}',
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        b'"content_block":{"type":"tool_use","id":"toolu_1","name":"calc","input":{}}}',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"input_json_delta","partial_json":"{\\"x\\": NaN}"}}',
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}',
        b'event: content_block_start\ndata: {"type":"content_block_start","index":1,'
        b'"content_block":{"type":"tool_use","id":"toolu_2","input":{}}}',
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":1}',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":2,'
        b'"delta":{"type":"text_delta","text":"still \\"here\\""}}',
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
        b'"usage":{"output_tokens":5}}',
        b'event: message_stop\ndata: {"type":"message_stop"}',
    ]
    body = b"\n\n".join(lines) + b"\n\n"
    observer = _llmwire.Observer(_llmwire.Call(cap.run, "anthropic", "m"), _llmwire.AnthropicWire())
    observer.response(200, "text/event-stream")
    observer.feed(body)
    observer.end()
    assert cap.events() == [
        {"event": "llm.request", "call_id": "llm-1", "provider": "anthropic", "model": "m"},
        {"event": "tool.selected", "call_id": "toolu_1", "tool": "calc", "input": '{"x": NaN}'},
        {"event": "tool.selected", "call_id": "toolu_2", "tool": "unknown", "input": {}},
        {"event": "text.delta", "text": 'still "here"', "call_id": "llm-1"},
        {
            "event": "llm.response",
            "call_id": "llm-1",
            "stop_reason": "end_turn",
            "output_tokens": 5,
            "ttft": True,
        },
    ]
