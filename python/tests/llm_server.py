"""A model provider on a loopback socket for the tests: it answers each request with the
next scripted reply, byte for byte as recorded (crates/herald/tests/fixtures/llm/), sent
in small chunked-encoding pieces so that lines and events arrive split, and it keeps the
requests it was sent.

The official `anthropic` and `openai` clients talk to it through their `base_url`
(`ANTHROPIC_BASE_URL` without `/v1`, `OPENAI_BASE_URL` with it).
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[2] / "crates/herald/tests/fixtures/llm"


def fixture(name: str) -> bytes:
    """A recorded response body, e.g. `anthropic/tool_use.sse`."""
    return (FIXTURES / name).read_bytes()


@dataclass
class Reply:
    """One scripted answer. `hold_after` (bytes of the body) stops sending just after its
    first occurrence until `release` is set, so a test can see what was reported while
    the rest of the stream has not been sent; `cut` ends the connection after that many
    bytes of the body, without the chunked encoding's end."""

    body: bytes
    status: int = 200
    content_type: str = "text/event-stream"
    chunk: int = 13
    hold_after: bytes | None = None
    release: threading.Event = field(default_factory=threading.Event)
    cut: int | None = None
    headers: dict = field(default_factory=dict)


def sse(name: str, **kw: Any) -> Reply:
    return Reply(fixture(name), **kw)


def error_json(name: str, status: int, **kw: Any) -> Reply:
    return Reply(fixture(name), status=status, content_type="application/json", **kw)


class LlmServer:
    """Start with `LlmServer()`, script with `reply(...)`, stop with `close()`."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                with server._lock:
                    server.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "body": json.loads(raw)}
                    )
                    reply = server.replies.pop(0) if server.replies else None
                if reply is None:
                    reply = Reply(
                        b'{"error":{"type":"test_error","message":"no reply scripted"}}',
                        status=500,
                        content_type="application/json",
                    )
                self.send_response(reply.status)
                self.send_header("content-type", reply.content_type)
                self.send_header("transfer-encoding", "chunked")
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                body = reply.body
                hold = -1
                if reply.hold_after is not None:
                    hold = body.index(reply.hold_after) + len(reply.hold_after)
                end = len(body) if reply.cut is None else reply.cut
                pos = 0
                while pos < end:
                    stop = min(pos + reply.chunk, end)
                    if pos < hold <= stop:
                        stop = hold
                    self._chunk(body[pos:stop])
                    pos = stop
                    if pos == hold and not reply.release.wait(30):
                        break
                if reply.cut is None:
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                else:
                    self.close_connection = True

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def reply(self, *replies: Reply) -> None:
        with self._lock:
            self.replies.extend(replies)

    def close(self) -> None:
        for reply in self.replies:
            reply.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()


# --- what herald reported -----------------------------------------------------------------

LLM_EVENTS = ("llm.request", "llm.response", "text.delta", "tool.selected")


class Capture:
    """A herald run whose events are kept in memory."""

    def __init__(self) -> None:
        import herald

        self.sink = herald.MemorySink()
        self.progress = herald.Progress([herald.Target.memory(self.sink)])
        self.run = self.progress.run("llm-test")
        self.run.__enter__()

    def events(self) -> list:
        """The model calls' events so far, without the envelope (`v`, `run`, `seq`, `ts`)
        nor the measured times, which are checked here: `elapsed_s` on every response,
        `ttft_s` where a token came."""
        assert self.progress.flush(10), "herald's events did not reach the sink in 10 s"
        out = []
        for event in self.sink.events:
            if event["event"] not in LLM_EVENTS:
                continue
            fields = {k: v for k, v in event.items() if k not in ("v", "run", "seq", "ts")}
            if fields["event"] == "llm.response":
                assert fields.pop("elapsed_s") >= 0
                ttft = fields.pop("ttft_s", None)
                assert ttft is None or 0 <= ttft <= fields.get("elapsed_s", 1e9)
                fields["ttft"] = ttft is not None
            out.append(fields)
        return out

    def wait_for(self, predicate: Any, what: str, timeout: float = 10.0) -> None:
        """Waits until the events reported so far satisfy `predicate`."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.progress.flush(1)
            if predicate(self.sink.events):
                return
            time.sleep(0.005)
        raise AssertionError(f"herald never reported {what} within {timeout} s")

    def close(self) -> None:
        self.run.__exit__(None, None, None)
        self.progress.close()


def chunkings(body: bytes) -> list:
    """The body cut every way worth trying: in pieces of 1 to 40 bytes, whole, and with
    CRLF line endings in pieces of 1, 2, 7 and 64 bytes."""
    out = [[body[i : i + n] for i in range(0, len(body), n)] for n in range(1, 41)]
    out.append([body])
    crlf = body.replace(b"\n", b"\r\n")
    out += [[crlf[i : i + n] for i in range(0, len(crlf), n)] for n in (1, 2, 7, 64)]
    return out


def reported_per_chunking(cap: Capture, provider: str, body: bytes, make_wire: Any) -> list:
    """What herald reports for `body` in each of its chunkings, one call each, with the
    call ids made alike."""
    from herald import _llmwire

    for pieces in chunkings(body):
        call = _llmwire.Call(cap.run, provider, "test-model")
        observer = _llmwire.Observer(call, make_wire())
        observer.response(200, "text/event-stream")
        for piece in pieces:
            observer.feed(piece)
        observer.end()
    calls: list = []
    for event in cap.events():
        if event["event"] == "llm.request":
            calls.append([])
        if event.get("call_id", "").startswith("llm-"):
            event = {**event, "call_id": "llm"}
        calls[-1].append(event)
    return calls


def run_program(mode: str, program: Any, c: Any) -> Any:
    """What the program saw: its return value, or the exception it caught."""
    try:
        if mode == "sync":
            return program[0](c)
        return asyncio.run(program[1](c))
    except Exception as e:
        return ("raised", type(e).__name__, str(e))


def raised(seen: Any) -> bool:
    return isinstance(seen, tuple) and seen[0] == "raised"
