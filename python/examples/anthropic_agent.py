"""An agent loop with tool calls on the official `anthropic` SDK, reported by herald.

The model reads a few documents through two tools and writes a risk summary. herald
reports each model call by itself (`herald.anthropic.instrument`: the request, the text
as it streams, the tools the model picks with their input, the tokens), and the loop
reports its iterations, the tools it runs and the answer.

    ANTHROPIC_API_KEY=... HERALD_PROGRESS=bars python python/examples/anthropic_agent.py
    ANTHROPIC_BASE_URL=http://127.0.0.1:PORT ANTHROPIC_API_KEY=test python ...

`ANTHROPIC_BASE_URL` points the client at another server, such as the tests' local
provider (python/tests/llm_server.py), which replays recorded answers; `AGENT_MODEL`
picks the model. The answer goes to stdout, progress where `HERALD_PROGRESS` says.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import anthropic

import herald
import herald.anthropic

MODEL = os.environ.get("AGENT_MODEL", "claude-sonnet-4-6")
MAX_ITERATIONS = 8

DOCUMENTS = {
    1: "Supplier contract: deliveries are due within 30 days; three were late this quarter.",
    2: "Board minutes: the amendment to the supplier contract is still awaiting signature.",
    3: "Audit notes: invoices 1182 and 1183 were each paid twice in October.",
}

TOOLS = [
    {
        "name": "lookup_document",
        "description": "Reads one document by its number.",
        "input_schema": {
            "type": "object",
            "properties": {"doc": {"type": "integer", "minimum": 1}},
            "required": ["doc"],
        },
    },
    {
        "name": "search_summaries",
        "description": "Finds the documents whose text has all the given words.",
        "input_schema": {
            "type": "object",
            "properties": {"query": {"type": "string"}},
            "required": ["query"],
        },
    },
]

TASK = (
    f"There are {len(DOCUMENTS)} documents, numbered from 1. Read what you need with the "
    "tools and name the three biggest risks they show, in one sentence."
)


def run_tool(name: str, tool_input: Any) -> Any:
    """What a tool returns; a ValueError is the model's mistake, told back to it."""
    if name == "lookup_document":
        doc = tool_input.get("doc") if isinstance(tool_input, dict) else None
        if doc not in DOCUMENTS:
            raise ValueError(f"there is no document {doc!r}: they are 1 to {len(DOCUMENTS)}")
        return {"doc": doc, "text": DOCUMENTS[doc]}
    if name == "search_summaries":
        words = str(tool_input.get("query", "")).lower().split()
        return [n for n, text in DOCUMENTS.items() if all(w in text.lower() for w in words)]
    raise ValueError(f"unknown tool {name}: the tools are lookup_document and search_summaries")


def main() -> int:
    progress = herald.Progress.from_env()
    client = anthropic.Anthropic()  # ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL
    with progress.run("anthropic-agent", meta={"model": MODEL}) as run:
        herald.anthropic.instrument(client, run)
        messages: list = [{"role": "user", "content": TASK}]
        for iteration in range(1, MAX_ITERATIONS + 1):
            run.iteration(iteration)
            with client.messages.stream(
                model=MODEL, max_tokens=1024, tools=TOOLS, messages=messages
            ) as stream:
                for _ in stream.text_stream:
                    pass  # herald reports the text as it arrives
                reply = stream.get_final_message()
            messages.append({"role": "assistant", "content": reply.content})
            if reply.stop_reason != "tool_use":
                answer = "".join(b.text for b in reply.content if b.type == "text")
                run.response(answer, iteration=iteration)
                run.finish({"iterations": iteration})
                print(answer)
                return 0
            results = []
            for block in reply.content:
                if block.type != "tool_use":
                    continue
                with run.tool(block.name, block.input, call_id=block.id) as call:
                    try:
                        output = run_tool(block.name, block.input)
                    except ValueError as e:
                        call.fail(e)
                        results.append(
                            {
                                "type": "tool_result",
                                "tool_use_id": block.id,
                                "content": str(e),
                                "is_error": True,
                            }
                        )
                        continue
                    call.output = output
                results.append(
                    {"type": "tool_result", "tool_use_id": block.id, "content": json.dumps(output)}
                )
            messages.append({"role": "user", "content": results})
        run.fail(f"no answer after {MAX_ITERATIONS} iterations")
        print(f"no answer after {MAX_ITERATIONS} iterations", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
