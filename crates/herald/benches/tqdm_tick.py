#!/usr/bin/env python3
"""tqdm's cost per progress tick, the Python peer of `benches/tick.rs`.

Measures, with time.perf_counter_ns and the garbage collector off (as timeit does):

- iter_ns: one iteration of `for _ in tqdm(range(N), file=...)`, tqdm's common form;
- update_ns: one `bar.update(1)` call;
- bare_loop_ns / bare_call_ns: the same loop without tqdm, and a call of a method that
  does nothing, so the reader can see how much of each figure is Python itself.

tqdm renders for real (disable=False, its default mininterval of 0.1 s) into an
in-memory file, so nothing reaches the terminal. Each figure is the median of REPEATS
runs of N ticks. The last line printed is one JSON object, read by `tick.rs`:

    {"bench": "tqdm_tick", "tqdm": "4.x", "python": "3.x", "n": ..., "iter_ns": ..., ...}

Run: python3 crates/herald/benches/tqdm_tick.py   (needs `pip install tqdm`)
"""

import gc
import io
import json
import platform
import statistics
import sys
import time

N = 2_000_000
REPEATS = 5


def median_ns_per_tick(run):
    """Times `run()` (N ticks) REPEATS times; the median, in ns per tick."""
    samples = []
    for _ in range(REPEATS):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter_ns()
            run()
            elapsed = time.perf_counter_ns() - start
        finally:
            gc.enable()
        samples.append(elapsed / N)
    return statistics.median(samples)


def main():
    try:
        import tqdm
        from tqdm import tqdm as Tqdm
    except ImportError:
        print(
            "tqdm_tick.py: the tqdm package is not installed: run `pip install tqdm`",
            file=sys.stderr,
        )
        return 2

    def bare_loop():
        for _ in range(N):
            pass

    def tqdm_loop():
        for _ in Tqdm(range(N), file=io.StringIO()):
            pass

    class Nothing:
        def update(self, n):
            pass

    def bare_call():
        update = Nothing().update
        for _ in range(N):
            update(1)

    def tqdm_update():
        bar = Tqdm(total=N, file=io.StringIO())
        update = bar.update
        for _ in range(N):
            update(1)
        bar.close()

    result = {
        "bench": "tqdm_tick",
        "tqdm": tqdm.__version__,
        "python": platform.python_version(),
        "n": N,
        "repeats": REPEATS,
        "iter_ns": round(median_ns_per_tick(tqdm_loop), 2),
        "update_ns": round(median_ns_per_tick(tqdm_update), 2),
        "bare_loop_ns": round(median_ns_per_tick(bare_loop), 2),
        "bare_call_ns": round(median_ns_per_tick(bare_call), 2),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
