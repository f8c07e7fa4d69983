"""Reports the model calls of an official `openai` client (`OpenAI` or `AsyncOpenAI`)
through a herald run: chat completions, as OpenAI serves them and as vLLM, llama.cpp's
server and Ollama do.

    client = herald.openai.instrument(openai.OpenAI(), run)
    for chunk in client.chat.completions.create(
        model=..., messages=..., stream=True, stream_options={"include_usage": True}
    ):
        ...

Every call to `chat.completions`, streamed or not, reports `llm.request`, `text.delta` as
the text arrives, `tool.selected` for each tool call with its parsed arguments, and
`llm.response` with the model that answered, the finish reason, the tokens (a stream has
them with `stream_options={"include_usage": True}`) and the time to first token. An
`error` chunk mid-stream, an HTTP error (429, 5xx) or a failed connection ends the call
as failed, naming the provider's error. Each HTTP attempt is one call. The program sees
exactly what it would without herald: the same objects, the same exceptions, the same
bytes. (The Responses API is not reported.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from . import _llmwire

if TYPE_CHECKING:
    from ._run import Run

__all__ = ["instrument", "uninstrument"]

C = TypeVar("C")

_SUFFIX = "/chat/completions"


def instrument(client: C, run: Run, *, provider: str = "openai") -> C:
    """Reports `client`'s chat completions through `run` (a `herald.Run`), from now on,
    naming `provider` in `llm.request` (`vllm`, `ollama`, ... for a compatible server),
    and returns `client` itself. Its copies (`with_options`) share its HTTP client and are
    reported too. Instrumenting again reports through the new run instead.

    Raises TypeError when `client` is not an `openai` client, `run` not a run or
    `provider` not a string, ValueError when `provider` is empty."""
    if not isinstance(provider, str):
        raise TypeError(f"provider must be a str, not {type(provider).__name__}")
    if not provider:
        raise ValueError("provider must not be empty")
    _llmwire.install(
        client,
        run,
        "openai",
        _SUFFIX,
        lambda: _llmwire.OpenAiWire(provider),
        "an openai.OpenAI or openai.AsyncOpenAI client",
    )
    return client


def uninstrument(client: Any) -> None:
    """Stops reporting `client`'s calls."""
    _llmwire.uninstall(client, _SUFFIX)
