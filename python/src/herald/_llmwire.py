"""The model providers' wire formats, observed: the shared half of `herald.anthropic` and
`herald.openai`.

It mirrors crates/herald/src/llm.rs (and llm/anthropic.rs, llm/openai.rs, llm/sse.rs):
it watches the bytes of one model call as the official client reads them and reports
the call through its run, never consuming or changing a byte.

- `llm.request` (call id, provider, model) when the request goes out, so the time to
  first token counts from there;
- `text.delta` for each piece of the answer's text, with the call id;
- `tool.selected` for each tool the model calls, with the provider's tool call id and
  the parsed input, once its JSON is complete;
- `llm.response` when the model stops: the model that answered, the stop reason, the
  tokens, the time to first token; or, for a failed call, stop reason `error` and the
  provider's error type and message, whether it came as an `error` event in the stream,
  as an HTTP error (429, 529 overloaded, ...) or as a failed connection.

Where: the clients send every HTTP attempt through their httpx client's `send`
(`httpx2` for the current SDKs, `httpx` for older ones). `install` replaces `send` on
that one httpx client object with a wrapper that reports the calls to the model
endpoints (`.../messages`, `.../chat/completions`) and passes everything else through.
Each attempt is one call: a 529 the client retries is a failed call, and the retry
another call. Nothing here raises into the program: a failure of herald's own is
swallowed and the bytes still flow.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import re
import sys
from typing import Any, Callable

# How long a call may be silent before a heartbeat speaks for it (as the Rust SDK).
HEARTBEAT_EVERY = 5.0

# An error body worth reading is short; a proxy's HTML error page can be long.
_ERROR_BODY_LIMIT = 64 * 1024


class LlmError:
    """Why a model call failed: the HTTP status when there was one, the provider's error
    type when it named one, and what went wrong in its words."""

    __slots__ = ("status", "kind", "message")

    def __init__(self, message: str, kind: str | None = None, status: int | None = None):
        self.status = status
        self.kind = kind
        self.message = message

    def __str__(self) -> str:
        text = f"{self.kind}: {self.message}" if self.kind else self.message
        return f"{text} (HTTP {self.status})" if self.status is not None else text

    @staticmethod
    def from_body(error: Any) -> LlmError:
        """The error object of an error body or event: Anthropic's `{"type", "message"}`,
        OpenAI's `{"message", "type", "code"}`."""
        if isinstance(error, str):
            return LlmError(error)
        if not isinstance(error, dict):
            return LlmError(json.dumps(error))

        def text(key: str) -> str | None:
            value = error.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return str(value)
            return None

        # OpenAI's `code` is the precise one (`rate_limit_exceeded`), its `type` the broad
        # one (`requests`); Anthropic has only `type`.
        return LlmError(text("message") or json.dumps(error), kind=text("code") or text("type"))

    @staticmethod
    def from_http(status: int, body: bytes) -> LlmError:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and "error" in parsed:
            error = LlmError.from_body(parsed["error"])
            error.status = status
            return error
        text = body.decode("utf-8", "replace").strip()
        return LlmError(text[:200] if text else _REASONS.get(status, "HTTP error"), status=status)


_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    529: "Overloaded",
}


class Call:
    """One model call as both wire formats report it, around the run's own `LlmCall`
    (which keeps the time to first token and writes the events)."""

    __slots__ = (
        "_llm",
        "_heartbeat",
        "model",
        "stop_reason",
        "input_tokens",
        "output_tokens",
        "stopped",
    )

    def __init__(self, run: Any, provider: str, model: str | None):
        self._llm: Any | None = run.llm(model, provider=provider)
        # While the model thinks before its first token, or pauses, the run is not silent.
        self._heartbeat = run.heartbeat(every=HEARTBEAT_EVERY)
        self.model: str | None = None
        self.stop_reason: str | None = None
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        # The model said why it stopped (a stop reason, or the stream's end marker).
        self.stopped = False

    @property
    def open(self) -> bool:
        return self._llm is not None

    @property
    def call_id(self) -> str | None:
        return None if self._llm is None else self._llm.call_id

    def first_token(self) -> None:
        if self._llm is not None:
            self._llm.first_token()

    def text(self, text: str | None) -> None:
        if text and self._llm is not None:
            self._llm.text(text)

    def tool(self, tool_id: str, name: str, arguments: str) -> None:
        """A tool call whose input JSON is complete: `tool.selected`, with the provider's
        id for the call (`toolu_...`, `call_...`) when it gave one."""
        if self._llm is None:
            return
        # An empty input is an empty object (a tool without parameters); input that is
        # not JSON at all is kept as the text it is.
        if not arguments.strip():
            value: Any = {}
        else:
            try:
                value = json.loads(arguments, parse_constant=_not_json)
            except ValueError:
                value = arguments
        self._llm.run.tool_selected(name or "unknown", value, call_id=tool_id or None)

    def _settle(self) -> Any | None:
        llm, self._llm = self._llm, None
        if llm is not None:
            self._heartbeat.close()
            if self.model:
                llm.set_model(self.model)
            llm.usage(self.input_tokens, self.output_tokens)
        return llm

    def respond(self) -> None:
        """The model stopped and the stream said all it will: `llm.response`."""
        llm = self._settle()
        if llm is not None:
            llm.finish(self.stop_reason)

    def fail(self, error: LlmError) -> None:
        """The call failed: `llm.response` with stop reason `error` and the error."""
        llm = self._settle()
        if llm is not None:
            llm.fail(str(error))

    def close(self, why: str) -> None:
        """The body ended or was closed: a success if the model had said why it stopped."""
        if self.stopped:
            self.respond()
        else:
            self.fail(LlmError(why))


# --- server-sent events ---------------------------------------------------------------


class SseParser:
    """Bytes to lines to events, in chunks of any size (a line may be split between two).

    Lines end with LF or CRLF, as every provider sends them; a field is `event:` or
    `data:` (several `data:` lines join with LF); a blank line ends an event; comments
    (`:`) and other fields are skipped. An event's data stays bytes, which `json.loads`
    reads as they are.
    """

    __slots__ = ("_rest", "_event", "_data")

    def __init__(self) -> None:
        self._rest = b""
        self._event = ""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes, emit: Callable[[str, bytes], None]) -> None:
        buf = self._rest + chunk if self._rest else chunk
        end = buf.rfind(b"\n")
        if end < 0:
            self._rest = buf
            return
        self._rest = buf[end + 1 :]
        for line in buf[:end].split(b"\n"):
            self._line(line, emit)

    def end(self, emit: Callable[[str, bytes], None]) -> None:
        """The body ended: a last line without its line ending, and an event without its
        blank line, still count."""
        if self._rest:
            rest, self._rest = self._rest, b""
            self._line(rest, emit)
        self._line(b"", emit)

    def _line(self, line: bytes, emit: Callable[[str, bytes], None]) -> None:
        # The common lines first: `data: {...}`, the blank line, `event: name`.
        if line[-1:] == b"\r":
            line = line[:-1]
        if line[:5] == b"data:":
            self._data.append(line[6:] if line[5:6] == b" " else line[5:])
        elif not line:
            if self._data:
                data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
                event = self._event
                self._data = []
                self._event = ""
                emit(event, data)
            else:
                self._event = ""
        elif line[:6] == b"event:":
            value = line[7:] if line[6:7] == b" " else line[6:]
            self._event = value.decode("utf-8", "replace")


# --- the two wire formats ---------------------------------------------------------------


# A text delta as Anthropic sends it, when its text has no escape (nor quote).
_TEXT_DELTA = re.compile(
    rb'\{"type": ?"content_block_delta", ?"index": ?\d+, ?"delta": ?'
    rb'\{"type": ?"text_delta", ?"text": ?"([^"\\]*)"\}\}\s*\Z'
)


class AnthropicWire:
    """Anthropic's Messages API: `message_start`, then per content block a
    `content_block_start`, its `content_block_delta`s (`text_delta`, `input_json_delta`,
    `thinking_delta`, `signature_delta`) and a `content_block_stop`, then `message_delta`
    (stop reason, cumulative usage) and `message_stop`; `ping`s anywhere, and an `error`
    event when the call fails mid-stream. Fields and event types it does not know are
    skipped, as the API's versioning policy asks."""

    provider = "anthropic"

    __slots__ = ("_tools",)

    def __init__(self) -> None:
        # Tool use blocks whose input is still arriving, by block index: [id, name, json parts].
        self._tools: dict[int, list[Any]] = {}

    def event(self, call: Call, _name: str, data: bytes) -> None:
        # Most events are text deltas: one without escapes is read without a JSON parser.
        fast = _TEXT_DELTA.match(data)
        if fast is not None:
            call.first_token()
            call.text(fast.group(1).decode("utf-8", "replace"))
            return
        # The data's `type` says what the event is; the SSE name repeats it.
        try:
            frame = json.loads(data)
        except ValueError:
            return
        if not isinstance(frame, dict):
            return
        kind = frame.get("type")
        if kind == "content_block_delta":
            delta = frame.get("delta")
            if not isinstance(delta, dict):
                return
            call.first_token()
            dkind = delta.get("type")
            if dkind == "text_delta":
                text = delta.get("text")
                if isinstance(text, str):
                    call.text(text)
            elif dkind == "input_json_delta":
                tool = self._tools.get(frame.get("index", 0))
                part = delta.get("partial_json")
                if tool is not None and isinstance(part, str):
                    tool[2].append(part)
            # Thinking and its signature are not the answer's text.
        elif kind == "message_start":
            message = frame.get("message")
            if isinstance(message, dict):
                model = message.get("model")
                if isinstance(model, str):
                    call.model = model
                _anthropic_usage(call, message.get("usage"))
        elif kind == "content_block_start":
            block = frame.get("content_block")
            if not isinstance(block, dict):
                return
            bkind = block.get("type")
            # Only the program can run its tools; a server tool (`server_tool_use`) is
            # run by the provider and reported in its own result block.
            if bkind == "tool_use":
                call.first_token()
                self._tools[frame.get("index", 0)] = [
                    _str(block.get("id")),
                    _str(block.get("name")),
                    [],
                ]
            elif bkind in ("thinking", "redacted_thinking"):
                call.first_token()
        elif kind == "content_block_stop":
            tool = self._tools.pop(frame.get("index", 0), None)
            if tool is not None:
                call.tool(tool[0], tool[1], "".join(tool[2]))
        elif kind == "message_delta":
            delta = frame.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("stop_reason"), str):
                call.stop_reason = delta["stop_reason"]
                call.stopped = True
            _anthropic_usage(call, frame.get("usage"))
        elif kind == "message_stop":
            call.stopped = True
            call.respond()
        elif kind == "error":
            error = frame.get("error")
            call.fail(
                LlmError.from_body(error)
                if error is not None
                else LlmError("an error event without details")
            )

    def end(self, call: Call) -> None:
        pass

    def message(self, call: Call, body: Any) -> None:
        """A whole answer (`stream` false): a `message` object. Its tokens arrive all at
        once: the first of them with it."""
        if not isinstance(body, dict):
            return
        call.first_token()
        if isinstance(body.get("model"), str):
            call.model = body["model"]
        _anthropic_usage(call, body.get("usage"))
        for block in body.get("content") or ():
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text":
                call.text(block.get("text"))
            elif block.get("type") == "tool_use":
                call.tool(
                    _str(block.get("id")), _str(block.get("name")), json.dumps(block.get("input"))
                )
        if isinstance(body.get("stop_reason"), str):
            call.stop_reason = body["stop_reason"]
        call.stopped = True
        call.respond()


def _anthropic_usage(call: Call, usage: Any) -> None:
    """Takes the counts this event has: `message_delta`'s are cumulative, so the last one
    seen is the total; the prompt's tokens are the uncached ones plus those written to and
    read from the prompt cache."""
    if not isinstance(usage, dict):
        return
    uncached = _count(usage.get("input_tokens"))
    if uncached is not None:
        written = _count(usage.get("cache_creation_input_tokens")) or 0
        read = _count(usage.get("cache_read_input_tokens")) or 0
        call.input_tokens = min(uncached + written + read, 2**64 - 1)
    output = _count(usage.get("output_tokens"))
    if output is not None:
        call.output_tokens = output


class OpenAiWire:
    """OpenAI's chat completions, as OpenAI, vLLM, llama.cpp's server and Ollama send them:
    `data:` lines of `chat.completion.chunk` objects whose first choice's `delta` carries
    `content`, `tool_calls` fragments (an `index`; the `id` and `function.name` in the
    first fragment, `function.arguments` in pieces) and at last a `finish_reason`; with
    `stream_options.include_usage`, a last chunk with no choices and the `usage`; then
    `data: [DONE]`. A tool call's arguments are complete when the next tool call begins or
    the choice finishes. Only the first choice is followed. An error arrives as a chunk
    with an `error` object."""

    __slots__ = ("provider", "_tools")

    def __init__(self, provider: str = "openai") -> None:
        self.provider = provider
        # Tool calls whose arguments may still arrive, in index order: [index, id, name, parts].
        self._tools: list[list[Any]] = []

    def event(self, call: Call, name: str, data: bytes) -> None:
        data = data.rstrip()
        if data == b"[DONE]":
            self.end(call)
            call.stopped = True
            call.respond()
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            if name == "error":
                call.fail(LlmError(data.decode("utf-8", "replace")))
            return
        if not isinstance(chunk, dict):
            return
        if chunk.get("error") is not None:
            call.fail(LlmError.from_body(chunk["error"]))
            return
        if call.model is None and isinstance(chunk.get("model"), str):
            call.model = chunk["model"]
        _openai_usage(call, chunk.get("usage"))
        choice = _first_choice(chunk.get("choices"))
        if choice is None:
            return
        delta = choice.get("delta")
        if isinstance(delta, dict):
            # vLLM's and DeepSeek's name for the thinking, and Ollama's and OpenRouter's.
            if delta.get("reasoning_content") or delta.get("reasoning"):
                call.first_token()
            content = delta.get("content")
            if isinstance(content, str):
                call.text(content)
            for part in delta.get("tool_calls") or ():
                if isinstance(part, dict):
                    call.first_token()
                    self._tool_part(call, part)
        if isinstance(choice.get("finish_reason"), str):
            call.stop_reason = choice["finish_reason"]
            call.stopped = True
            # Every tool call is complete; the usage chunk and `[DONE]` may follow.
            self.end(call)

    def _tool_part(self, call: Call, part: dict[str, Any]) -> None:
        index = _count(part.get("index"))
        if index is None:
            # Some servers send one tool call per chunk without an index: a fragment
            # with an id starts the next call.
            last = self._tools[-1][0] if self._tools else None
            if part.get("id"):
                index = 0 if last is None else last + 1
            else:
                index = 0 if last is None else last
        tool = next((t for t in self._tools if t[0] == index), None)
        if tool is None:
            # A new call: those before it are complete.
            self._flush_before(call, index)
            tool = [index, "", "", []]
            self._tools.append(tool)
        if part.get("id") and not tool[1]:
            tool[1] = _str(part["id"])
        function = part.get("function")
        if isinstance(function, dict):
            if isinstance(function.get("name"), str):
                tool[2] += function["name"]
            if isinstance(function.get("arguments"), str):
                tool[3].append(function["arguments"])

    def _flush_before(self, call: Call, index: int) -> None:
        self._tools.sort(key=lambda t: t[0])
        while self._tools and self._tools[0][0] < index:
            tool = self._tools.pop(0)
            call.tool(tool[1], tool[2], "".join(tool[3]))

    def end(self, call: Call) -> None:
        """Reports every tool call still open."""
        self._flush_before(call, sys.maxsize)

    def message(self, call: Call, body: Any) -> None:
        """A whole answer (`stream` false): a `chat.completion` object."""
        if not isinstance(body, dict):
            return
        call.first_token()
        if isinstance(body.get("model"), str):
            call.model = body["model"]
        _openai_usage(call, body.get("usage"))
        choice = _first_choice(body.get("choices"))
        if choice is not None:
            message = choice.get("message")
            if isinstance(message, dict):
                if isinstance(message.get("content"), str):
                    call.text(message["content"])
                for tool in message.get("tool_calls") or ():
                    function = tool.get("function") if isinstance(tool, dict) else None
                    if isinstance(function, dict):
                        arguments = function.get("arguments")
                        call.tool(
                            _str(tool.get("id")),
                            _str(function.get("name")),
                            arguments if isinstance(arguments, str) else "",
                        )
            if isinstance(choice.get("finish_reason"), str):
                call.stop_reason = choice["finish_reason"]
        call.stopped = True
        call.respond()


def _first_choice(choices: Any) -> dict[str, Any] | None:
    if not isinstance(choices, list):
        return None
    for choice in choices:
        if isinstance(choice, dict) and choice.get("index", 0) == 0:
            return choice
    return None


def _openai_usage(call: Call, usage: Any) -> None:
    if not isinstance(usage, dict):
        return
    prompt = _count(usage.get("prompt_tokens"))
    if prompt is not None:
        call.input_tokens = prompt
    completion = _count(usage.get("completion_tokens"))
    if completion is not None:
        call.output_tokens = completion


def _not_json(constant: str) -> Any:
    """`NaN` and `Infinity`, which Python's parser takes and JSON has not."""
    raise ValueError(f"{constant} is not JSON")


def _count(value: Any) -> int | None:
    """`value` if it is a token count (an integer the protocol takes), else None."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64:
        return value
    return None


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


# --- one HTTP attempt, observed ---------------------------------------------------------


class Observer:
    """What one response's body says, fed as it is read: an event stream, a JSON answer,
    or an HTTP error's body."""

    __slots__ = ("call", "wire", "_sse", "_mode", "_status", "_body", "_size")

    def __init__(self, call: Call, wire: Any) -> None:
        self.call = call
        self.wire = wire
        self._sse = SseParser()
        self._mode = "sse"
        self._status = 200
        self._body: list[bytes] = []
        self._size = 0

    def _emit(self, name: str, data: bytes) -> None:
        # One event herald cannot take (its own bug, a value the run refuses) costs that
        # event alone, never the rest of the stream.
        try:  # noqa: SIM105 - per event: contextlib.suppress costs more
            self.wire.event(self.call, name, data)
        except Exception:
            pass

    def response(self, status: int, content_type: str) -> None:
        self._status = status
        if status >= 400:
            self._mode = "error"
        elif "text/event-stream" in content_type:
            self._mode = "sse"
        else:
            self._mode = "json"

    def feed(self, chunk: bytes) -> None:
        if not self.call.open:
            return
        if self._mode == "sse":
            self._sse.feed(chunk, self._emit)
        elif self._mode == "json" or self._size < _ERROR_BODY_LIMIT:
            self._body.append(chunk)
            self._size += len(chunk)

    def end(self) -> None:
        """The body was read to its end."""
        call = self.call
        if not call.open:
            return
        if self._mode == "sse":
            self._sse.end(self._emit)
            self.wire.end(call)
            call.close("the stream ended before the model stopped")
        elif self._mode == "json":
            try:
                body = json.loads(b"".join(self._body))
            except ValueError:
                call.fail(LlmError("the answer is not JSON"))
                return
            self.wire.message(call, body)
            call.close("the answer has no message")
        else:
            body = b"".join(self._body)[:_ERROR_BODY_LIMIT]
            call.fail(LlmError.from_http(self._status, body))

    def closed(self) -> None:
        """The body was closed before its end (the program stopped reading)."""
        if self.call.open:
            if self._mode == "error":
                self.end()
            else:
                self.wire.end(self.call)
                self.call.close("the stream was closed before the model stopped")

    def failed(self, exc: BaseException) -> None:
        """Reading the body (or sending the request) failed."""
        if self.call.open:
            self.call.fail(
                LlmError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            )


def _guard(what: Callable[..., None], *args: Any) -> None:
    """Herald's own failures never reach the program."""
    with contextlib.suppress(Exception):
        what(*args)


def _stream_classes(http: Any) -> tuple[type, type]:
    """`SyncByteStream` and `AsyncByteStream` of the httpx (or httpx2) the client uses."""
    for cls in type(http).__mro__:
        root = sys.modules.get(cls.__module__.split(".")[0])
        if root is not None and hasattr(root, "SyncByteStream"):
            return root.SyncByteStream, root.AsyncByteStream
    raise TypeError(f"the client's HTTP client is not httpx's: {type(http).__qualname__}")


class Instrumentation:
    """What `install` puts on one httpx client: the run, and the endpoints it reports by
    the end of their URL path, each with its wire format."""

    def __init__(self, run: Any) -> None:
        self.run = run
        self.routes: dict[str, Callable[[], Any]] = {}

    def wire_for(self, request: Any) -> Any | None:
        if request.method != "POST":
            return None
        path = request.url.path.rstrip("/")
        for suffix, make in self.routes.items():
            if path.endswith(suffix):
                return make()
        return None


_ATTR = "_herald_instrumentation"


def install(
    client: Any, run: Any, package: str, suffix: str, make_wire: Callable[[], Any], what: str
) -> None:
    """Reports the calls of `client` (a client of the official SDK `package`) to the
    endpoint whose path ends with `suffix` through `run`. Installing again changes the
    run."""
    from ._run import Run

    if not isinstance(run, Run):
        raise TypeError(f"run must be a herald Run, not {type(run).__name__}")
    http: Any = getattr(client, "_client", None)
    send = getattr(http, "send", None)
    ours = any(cls.__module__.split(".")[0] == package for cls in type(client).__mro__)
    if not ours or not callable(send) or not hasattr(http, "build_request"):
        raise TypeError(f"client must be {what}, not {type(client).__qualname__}")
    inst = http.__dict__.get(_ATTR)
    if inst is None:
        inst = Instrumentation(run)
        sync_stream, async_stream = _stream_classes(http)
        if inspect.iscoroutinefunction(send):
            http.send = _async_send(send, inst, async_stream)
        else:
            http.send = _sync_send(send, inst, sync_stream)
        setattr(http, _ATTR, inst)
    inst.run = run
    inst.routes[suffix] = make_wire


def uninstall(client: Any, suffix: str) -> None:
    """Stops reporting that endpoint's calls; with none left, `send` is the client's own."""
    http = getattr(client, "_client", None)
    inst = getattr(http, "__dict__", {}).get(_ATTR)
    if inst is None:
        return
    inst.routes.pop(suffix, None)
    if not inst.routes:
        http.__dict__.pop("send", None)
        http.__dict__.pop(_ATTR, None)


def _begin(inst: Instrumentation, request: Any) -> Observer | None:
    """The observer of this request's call, or None: not a reported endpoint, or
    herald could not begin it (which never fails the caller's request)."""
    try:
        return _begin_call(inst, request)
    except Exception:
        return None


def _begin_call(inst: Instrumentation, request: Any) -> Observer | None:
    wire = inst.wire_for(request)
    if wire is None:
        return None
    model = None
    try:
        body = json.loads(request.content)
        if isinstance(body, dict) and isinstance(body.get("model"), str):
            model = body["model"]
    except Exception:
        pass
    return Observer(Call(inst.run, wire.provider, model), wire)


def _observe(
    response: Any, observer: Observer, observed: Callable[[Any, Observer], Any], stream: bool
) -> bool:
    """Tells `observer` the response's status and wraps its stream in `observed`. True when
    `send` must read the body before returning: as httpx's own `send(stream=False)`, and
    for an error, whose body names the provider's error and which a client that retries
    closes unread (it is short; the client reads it too when it raises)."""
    try:
        observer.response(response.status_code, response.headers.get("content-type", ""))
        response.stream = observed(response.stream, observer)
    except Exception as exc:
        _guard(observer.failed, exc)
    return not stream or response.status_code >= 400


def _sync_send(send: Callable[..., Any], inst: Instrumentation, base: type) -> Callable[..., Any]:
    class ObservedStream(base):  # type: ignore[misc]
        def __init__(self, inner: Any, observer: Observer) -> None:
            self._inner = inner
            self._observer = observer

        def __iter__(self) -> Any:
            observer = self._observer
            try:
                for chunk in self._inner:
                    _guard(observer.feed, chunk)
                    yield chunk
            except GeneratorExit:
                raise
            except BaseException as exc:
                _guard(observer.failed, exc)
                raise
            _guard(observer.end)

        def close(self) -> None:
            try:
                self._inner.close()
            finally:
                _guard(self._observer.closed)

    def herald_send(request: Any, *args: Any, stream: bool = False, **kwargs: Any) -> Any:
        observer = _begin(inst, request)
        if observer is None:
            return send(request, *args, stream=stream, **kwargs)
        try:
            response = send(request, *args, stream=True, **kwargs)
        except BaseException as exc:
            _guard(observer.failed, exc)
            raise
        if _observe(response, observer, ObservedStream, stream):
            try:
                response.read()
            except BaseException:
                response.close()
                raise
        return response

    return herald_send


def _async_send(send: Callable[..., Any], inst: Instrumentation, base: type) -> Callable[..., Any]:
    class ObservedStream(base):  # type: ignore[misc]
        def __init__(self, inner: Any, observer: Observer) -> None:
            self._inner = inner
            self._observer = observer

        async def __aiter__(self) -> Any:
            observer = self._observer
            try:
                async for chunk in self._inner:
                    _guard(observer.feed, chunk)
                    yield chunk
            except GeneratorExit:
                raise
            except BaseException as exc:
                _guard(observer.failed, exc)
                raise
            _guard(observer.end)

        async def aclose(self) -> None:
            try:
                await self._inner.aclose()
            finally:
                _guard(self._observer.closed)

    async def herald_send(request: Any, *args: Any, stream: bool = False, **kwargs: Any) -> Any:
        observer = _begin(inst, request)
        if observer is None:
            return await send(request, *args, stream=stream, **kwargs)
        try:
            response = await send(request, *args, stream=True, **kwargs)
        except BaseException as exc:
            _guard(observer.failed, exc)
            raise
        if _observe(response, observer, ObservedStream, stream):
            try:
                await response.aread()
            except BaseException:
                await response.aclose()
                raise
        return response

    return herald_send
