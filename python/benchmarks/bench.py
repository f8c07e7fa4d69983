"""What herald costs a Python loop, side by side with tqdm, in one run.

    PYTHONPATH=python/src target/py-venv/bin/python python/benchmarks/bench.py

1. `stage.inc(1)` against tqdm's `bar.update(1)` (target: at most 0.5x);
2. `for x in stage.iter(xs)` against `for x in tqdm(xs)`, per element (target: at most 1x);
3. a loop of 10 us work items, each counted with `stage.inc(1)` and every 1000th logged,
   reporting to a hub that is down (a closed port), against the bare loop (target: at
   most +10%).

Each figure is the best of several repeats (the least disturbed by other processes);
both sides report somewhere real: herald JSON Lines to /dev/null (and a hub for 3), tqdm
its bar to /dev/null.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import sys
import time

import tqdm as tqdm_module

import herald


def best(fn, repeats: int) -> float:
    """The shortest of `repeats` timings of `fn()`, in seconds."""
    times = []
    for _ in range(repeats):
        t = fn()
        times.append(t)
    return min(times)


def bench_inc(n: int, repeats: int, devnull) -> tuple:
    progress = herald.Progress([herald.Target.json_writer(devnull)])
    run = progress.run("bench inc")

    def herald_inc() -> float:
        stage = run.stage(f"inc-{time.perf_counter_ns()}", total=n)
        inc = stage.inc
        start = time.perf_counter()
        for _ in range(n):
            inc(1)
        elapsed = time.perf_counter() - start
        stage.finish()
        return elapsed

    def tqdm_update() -> float:
        bar = tqdm_module.tqdm(total=n, file=devnull)
        update = bar.update
        start = time.perf_counter()
        for _ in range(n):
            update(1)
        elapsed = time.perf_counter() - start
        bar.close()
        return elapsed

    def bare() -> float:
        start = time.perf_counter()
        for _ in range(n):
            pass
        return time.perf_counter() - start

    h, t, b = best(herald_inc, repeats), best(tqdm_update, repeats), best(bare, repeats)
    run.finish()
    progress.close()
    # Per call, with the empty loop's own cost taken off both.
    return (h - b) / n, (t - b) / n


def bench_iter(n: int, repeats: int, devnull) -> tuple:
    progress = herald.Progress([herald.Target.json_writer(devnull)])
    run = progress.run("bench iter")
    xs = list(range(n))

    def herald_iter() -> float:
        stage = run.stage(f"iter-{time.perf_counter_ns()}")
        start = time.perf_counter()
        for _ in stage.iter(xs):
            pass
        elapsed = time.perf_counter() - start
        stage.finish()
        return elapsed

    def tqdm_iter() -> float:
        start = time.perf_counter()
        for _ in tqdm_module.tqdm(xs, file=devnull):
            pass
        return time.perf_counter() - start

    def bare() -> float:
        start = time.perf_counter()
        for _ in xs:
            pass
        return time.perf_counter() - start

    h, t, b = best(herald_iter, repeats), best(tqdm_iter, repeats), best(bare, repeats)
    run.finish()
    progress.close()
    return (h - b) / n, (t - b) / n


def work(ns: int) -> None:
    end = time.perf_counter_ns() + ns
    while time.perf_counter_ns() < end:
        pass


def bench_hub_down(n: int, repeats: int) -> tuple:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    progress = herald.Progress([herald.Target.hub(f"http://127.0.0.1:{port}")])
    run = progress.run("bench hub down")

    def with_herald() -> float:
        stage = run.stage(f"work-{time.perf_counter_ns()}", total=n)
        start = time.perf_counter()
        for i in range(n):
            work(10_000)
            stage.inc(1)
            if i % 1000 == 999:
                run.warn(f"{i + 1} items")  # a milestone: queued for the hub
        elapsed = time.perf_counter() - start
        stage.finish()
        return elapsed

    def without() -> float:
        start = time.perf_counter()
        for _ in range(n):
            work(10_000)
        return time.perf_counter() - start

    # alternate, so both see the same machine
    h_times, b_times = [], []
    for _ in range(repeats):
        b_times.append(without())
        h_times.append(with_herald())
    run.finish()
    progress.close(timeout=0.1)
    return min(h_times) / n, min(b_times) / n, progress.stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="calls per timing")
    parser.add_argument("--work-items", type=int, default=20_000, help="10 us items per timing")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"tqdm {tqdm_module.__version__}, {os.cpu_count()} CPUs, {platform.machine()}"
    )
    with open(os.devnull, "w") as devnull:
        h, t = bench_inc(args.n, args.repeats, devnull)
        print(
            f"stage.inc(1)          {h * 1e9:7.1f} ns   tqdm update(1)      {t * 1e9:7.1f} ns"
            f"   ratio {h / t:.2f}x (target <= 0.5x)"
        )
        h, t = bench_iter(args.n, args.repeats, devnull)
        print(
            f"stage.iter / element  {h * 1e9:7.1f} ns   for x in tqdm(xs)   {t * 1e9:7.1f} ns"
            f"   ratio {h / t:.2f}x (target <= 1x)"
        )
    h, b, stats = bench_hub_down(args.work_items, max(args.repeats // 2, 3))
    print(
        f"10 us item, hub down  {h * 1e6:7.2f} us   bare loop           {b * 1e6:7.2f} us"
        f"   overhead {(h / b - 1) * 100:+.1f}% (target <= +10%)"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
