"""Reports the model calls of an official `anthropic` client (`Anthropic` or
`AsyncAnthropic`) through a herald run.

    client = herald.anthropic.instrument(anthropic.Anthropic(), run)
    with client.messages.stream(model=..., max_tokens=..., messages=...) as stream:
        for text in stream.text_stream:
            ...

Every call to the Messages API, streamed (`messages.stream(...)`,
`messages.create(stream=True)`) or not, reports `llm.request`, `text.delta` as the text
arrives, `tool.selected` for each tool the model calls with its parsed input, and
`llm.response` with the model that answered, the stop reason, the tokens and the time to
first token. An `error` event mid-stream (`overloaded_error`), an HTTP error (429, 529)
or a failed connection ends the call as failed, naming the provider's error. Each HTTP
attempt is one call: a 529 that the client retries is a failed call, and the retry
another. The program sees exactly what it would without herald: the same objects, the
same exceptions, the same bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from . import _llmwire

if TYPE_CHECKING:
    from ._run import Run

__all__ = ["instrument", "uninstrument"]

C = TypeVar("C")

_SUFFIX = "/messages"


def instrument(client: C, run: Run) -> C:
    """Reports `client`'s Messages API calls through `run` (a `herald.Run`), from now on,
    and returns `client` itself. Its copies (`with_options`) share its HTTP client and are
    reported too. Instrumenting again reports through the new run instead.

    Raises TypeError when `client` is not an `anthropic` client or `run` not a run."""
    _llmwire.install(
        client,
        run,
        "anthropic",
        _SUFFIX,
        _llmwire.AnthropicWire,
        "an anthropic.Anthropic or anthropic.AsyncAnthropic client",
    )
    return client


def uninstrument(client: Any) -> None:
    """Stops reporting `client`'s calls."""
    _llmwire.uninstall(client, _SUFFIX)
