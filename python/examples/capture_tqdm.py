"""`herald.capture_tqdm()`: the tqdm bars of other libraries (here a stand-in for a
dataset download and a model load) become stages of the current run, and the script's
own loop uses `from herald import tqdm`, the drop-in.

    HERALD_PROGRESS_FILE=progress.jsonl python python/examples/capture_tqdm.py
"""

from __future__ import annotations

import time

import tqdm as tqdm_module  # what a library would import

import herald
from herald import tqdm


def download_dataset(n: int) -> list:
    """A library function with its own tqdm bar, unaware of herald."""
    rows = []
    for i in tqdm_module.tqdm(range(n), desc="downloading dataset", unit="rows"):
        rows.append(i)
        time.sleep(0.001)
    return rows


def load_model(shards: int) -> None:
    with tqdm_module.tqdm(total=shards, desc="loading model") as bar:
        for _ in range(shards):
            time.sleep(0.01)
            bar.update(1)


def main() -> None:
    progress = herald.Progress.from_env()
    with progress.run("fine-tune") as run, herald.capture_tqdm():
        rows = download_dataset(200)
        load_model(5)
        total = 0
        for row in tqdm(rows, desc="training"):
            total += row
        run.finish({"rows": len(rows), "sum": total})
    print(run.id)


if __name__ == "__main__":
    main()
