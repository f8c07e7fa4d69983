"""What herald's instrumentation of the `anthropic` and `openai` clients costs per streamed
delta: the bare client iterating a stream against the same client instrumented, side by
side in one run, on the same bytes.

The stream is served in-process by the client's own HTTP library's `MockTransport` (no
socket, no server), so what differs between the two columns is herald alone: observing
the bytes, parsing the events a second time, and writing `text.delta` events to a run
whose output is JSON Lines to /dev/null.

    PYTHONPATH=python/src target/py-venv/bin/python python/benchmarks/llm_stream_overhead.py
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import anthropic
import httpx2
import openai

import herald
import herald.anthropic
import herald.openai

DELTAS = 2000


def compact(value: Any) -> str:
    """JSON as the providers send it: without spaces."""
    return json.dumps(value, separators=(",", ":"))


ROUNDS = 25


def anthropic_body(n: int) -> bytes:
    out = [
        "event: message_start\ndata: "
        + compact(
            {
                "type": "message_start",
                "message": {
                    "id": "msg_bench",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-bench",
                    "content": [],
                    "stop_reason": None,
                    "usage": {"input_tokens": 10, "output_tokens": 1},
                },
            }
        ),
        'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        '"content_block":{"type":"text","text":""}}',
    ]
    for i in range(n):
        delta = {"type": "content_block_delta", "index": 0}
        delta["delta"] = {"type": "text_delta", "text": f" word{i}"}
        out.append("event: content_block_delta\ndata: " + compact(delta))
    out += [
        'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}',
        "event: message_delta\ndata: "
        + compact(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": n},
            }
        ),
        'event: message_stop\ndata: {"type":"message_stop"}',
    ]
    return ("\n\n".join(out) + "\n\n").encode()


def openai_body(n: int) -> bytes:
    def chunk(delta: dict, finish: Any = None) -> str:
        return "data: " + compact(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "gpt-bench",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
        )

    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": f" word{i}"}) for i in range(n)]
    out.append(chunk({}, "stop"))
    out.append("data: [DONE]")
    return ("\n\n".join(out) + "\n\n").encode()


def transport(body: bytes) -> httpx2.MockTransport:
    # About what one network read holds.
    pieces = [body[i : i + 4096] for i in range(0, len(body), 4096)]

    def handle(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(
            200, headers={"content-type": "text/event-stream"}, stream=_Pieces(pieces)
        )

    return httpx2.MockTransport(handle)


class _Pieces(httpx2.SyncByteStream):
    def __init__(self, pieces: list) -> None:
        self._pieces = pieces

    def __iter__(self) -> Any:
        yield from self._pieces


def per_delta(variants: dict) -> dict:
    """CPU seconds per delta of each variant, the best of ROUNDS streams: of the calling
    thread (`time.thread_time`, what the program's thread pays) and of the whole process
    (`time.process_time`, herald's background thread included). The variants take turns,
    and CPU time rather than the wall clock, so that other load on the machine touches
    them alike and little."""
    for fn in variants.values():
        fn()  # warm-up
    times: dict = {name: ([], []) for name in variants}
    for _ in range(ROUNDS):
        for name, fn in variants.items():
            thread, process = time.thread_time(), time.process_time()
            deltas = fn()
            times[name][0].append((time.thread_time() - thread) / deltas)
            times[name][1].append((time.process_time() - process) / deltas)
    return {name: (min(t), min(p)) for name, (t, p) in times.items()}


def anthropic_client(run: Any = None) -> Any:
    c = anthropic.Anthropic(
        api_key="k", http_client=httpx2.Client(transport=transport(anthropic_body(DELTAS)))
    )
    return c if run is None else herald.anthropic.instrument(c, run)


def openai_client(run: Any = None) -> Any:
    c = openai.OpenAI(
        api_key="k", http_client=httpx2.Client(transport=transport(openai_body(DELTAS)))
    )
    return c if run is None else herald.openai.instrument(c, run)


MESSAGES = [{"role": "user", "content": "hi"}]


def anthropic_create(client: Any) -> int:
    n = 0
    for event in client.messages.create(
        model="claude-bench", max_tokens=10, messages=MESSAGES, stream=True
    ):
        n += event.type == "content_block_delta"
    return n


def anthropic_text_stream(client: Any) -> int:
    n = 0
    with client.messages.stream(model="claude-bench", max_tokens=10, messages=MESSAGES) as s:
        for _ in s.text_stream:
            n += 1
    return n


def openai_create(client: Any) -> int:
    n = 0
    for chunk in client.chat.completions.create(model="gpt-bench", messages=MESSAGES, stream=True):
        n += bool(chunk.choices and chunk.choices[0].delta.content)
    return n


def main() -> None:
    devnull = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the run
    hidden = herald.Progress.hidden()
    jsonl = herald.Progress([herald.Target.json_writer(devnull)])
    rows = []
    with hidden.run("bench") as quiet, jsonl.run("bench") as loud:
        for name, program, make in (
            ("anthropic `messages.create(stream=True)`", anthropic_create, anthropic_client),
            ("anthropic `messages.stream()` text_stream", anthropic_text_stream, anthropic_client),
            ("openai `chat.completions.create(stream=True)`", openai_create, openai_client),
        ):
            bare, observed, reported = make(), make(quiet), make(loud)

            def with_flush(client: Any, program: Any = program) -> int:
                # The events' delivery on herald's thread counts too.
                n = program(client)
                jsonl.flush()
                return n

            t = per_delta(
                {
                    "bare": lambda program=program, bare=bare: program(bare),
                    "hidden": lambda program=program, c=observed: program(c),
                    "jsonl": lambda c=reported, f=with_flush: f(c),
                }
            )
            rows.append((name, t["bare"], t["hidden"], t["jsonl"]))
    print(
        f"{DELTAS} deltas a stream, best of {ROUNDS} streams, CPU µs per delta: the calling"
        f" thread's (the whole process's), Python {sys.version.split()[0]},"
        f" anthropic {anthropic.__version__}, openai {openai.__version__}"
    )
    print(
        "| call | bare client | + herald, reporting nowhere | + herald, JSON Lines "
        "| herald adds, nowhere | herald adds, JSON Lines |"
    )
    print("|---|---:|---:|---:|---:|---:|")

    def us(pair: tuple) -> str:
        return f"{pair[0] * 1e6:.1f} ({pair[1] * 1e6:.1f})"

    for name, b, h, j in rows:
        added_h = (h[0] - b[0], h[1] - b[1])
        added_j = (j[0] - b[0], j[1] - b[1])
        print(f"| {name} | {us(b)} | {us(h)} | {us(j)} | {us(added_h)} | {us(added_j)} |")


if __name__ == "__main__":
    main()
