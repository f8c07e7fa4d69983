"""A pipeline with stages: fetch, parse, summarize.

    HERALD_PROGRESS=bars python python/examples/pipeline.py
    HERALD_URL=http://127.0.0.1:7311 python python/examples/pipeline.py

Set PIPELINE_FAIL=1 to see a failed item fail its stage and the run, naming the error.
"""

from __future__ import annotations

import os
import time

import herald

DOCS = [f"doc-{i}" for i in range(1, 25)]
DELAY = float(os.environ.get("PIPELINE_DELAY", "0.02"))


def fetch(doc: str) -> str:
    time.sleep(DELAY)
    return f"contents of {doc}"


def parse(text: str) -> list:
    if os.environ.get("PIPELINE_FAIL") and text.endswith("doc-13"):
        raise ValueError(f"cannot parse {text!r}")
    return text.split()


def main() -> None:
    progress = herald.Progress.from_env()
    with progress.run("pipeline", total_steps=3, meta={"docs": len(DOCS)}) as run:
        texts = []
        with run.stage("fetch", total=len(DOCS), unit="docs") as stage:
            for doc in stage.iter(DOCS):
                stage.set_message(f"downloading {doc}")
                texts.append(fetch(doc))
        words = 0
        with run.stage("parse") as stage:
            for text in stage.iter(texts):
                words += len(parse(text))
        with run.stage("summarize", total=2) as stage:
            for part in ("intro", "body"):
                with stage.item(part):
                    time.sleep(DELAY)
                    stage.inc()
        run.info(f"{words} words in {len(DOCS)} documents")
        run.finish({"docs": len(DOCS), "words": words})
    print(run.id)


if __name__ == "__main__":
    main()
