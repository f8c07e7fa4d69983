#!/usr/bin/env python3
"""Records the real ETA traces of this folder from real commands run on this machine.

    python3 crates/herald-bench/traces/real/record.py NAME [NAME...]   (or: all)

Each recipe runs real work and notes when each unit of it finished, then writes
NAME.jsonl here in the format `eta-replay` reads: one line per completion,
`{"t": seconds since the start, "done": units, "total": units}`, and, for weighted work,
`"weight"` (of the units finished since the previous line) and `"total_weight"`.
Long runs are thinned to at most MAX_LINES lines by merging neighbouring completions,
which keeps their times and sums their weights. Only the standard library is used; the
recipes need cargo, psql (PostgreSQL at 127.0.0.1:5432, user postgres, trust), pip, xz,
network access to crates.io and PyPI, and `herald` built (target/debug/herald, for
llm-batch and as dominant's large file). Times depend on the machine and its load.
"""

import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[3]
MAX_LINES = 1500


class Recorder:
    """Notes completions against a monotonic clock started at creation."""

    def __init__(self):
        self.start = time.monotonic()
        self.points = []  # (t, weight or None)

    def done(self, weight=None, at=None):
        t = (time.monotonic() if at is None else at) - self.start
        self.points.append((t, weight))

    def write(self, name, weighted):
        points = sorted(self.points, key=lambda p: p[0])
        total = len(points)
        lines = []
        for n, (t, w) in enumerate(points, start=1):
            lines.append({"t": round(t, 6), "done": n, "weight": w or 0})
        step = max(1, -(-len(lines) // MAX_LINES))
        kept = []
        pending = 0
        for idx, line in enumerate(lines):
            pending += line["weight"]
            if (idx + 1) % step == 0 or idx + 1 == len(lines):
                kept.append(dict(line, weight=pending))
                pending = 0
        total_weight = sum(w or 0 for _, w in points)
        out = HERE / f"{name}.jsonl"
        with out.open("w") as f:
            for line in kept:
                row = {"t": line["t"], "done": line["done"], "total": total}
                if weighted:
                    row["weight"] = line["weight"]
                    row["total_weight"] = total_weight
                f.write(json.dumps(row) + "\n")
        print(f"{out.name}: {total} units in {points[-1][0]:.1f} s, {len(kept)} lines")


def files_under(roots, limit_bytes):
    """Regular files under `roots` in walk order, up to `limit_bytes` in all."""
    picked, size = [], 0
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                n = os.path.getsize(path)
                if size + n > limit_bytes:
                    return picked
                picked.append((path, n))
                size += n
    return picked


def build():
    """A cold build of herald-protocol and its dependencies: one unit per artifact."""
    target = tempfile.mkdtemp(prefix="eta-build-")
    rec = Recorder()
    cmd = ["cargo", "build", "-p", "herald-protocol", "--message-format", "json"]
    cmd += ["--target-dir", target]
    with subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True) as proc:
        for raw in proc.stdout:
            msg = json.loads(raw)
            if msg.get("reason") == "compiler-artifact":
                rec.done()
    shutil.rmtree(target)
    rec.write("build", weighted=False)


def tests():
    """herald-protocol's test suites, built first, then run on two threads: one unit per
    test that passed."""
    cmd = ["cargo", "test", "-p", "herald-protocol", "--no-run", "--message-format"]
    out = subprocess.run(
        cmd + ["json"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    binaries = [
        msg["executable"]
        for msg in map(json.loads, out.splitlines())
        if msg.get("reason") == "compiler-artifact" and msg.get("executable")
    ]
    rec = Recorder()
    for binary in binaries:
        with subprocess.Popen(
            [binary, "--test-threads", "2"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        ) as proc:
            for raw in proc.stdout:
                if re.match(r"^test .* \.\.\. ok$", raw.strip()):
                    rec.done()
    rec.write("tests", weighted=False)


def compress():
    """gzip (zlib level 6) over a tree of files of very mixed sizes, weighted by bytes."""
    picked = files_under(["/usr/lib/x86_64-linux-gnu", "/usr/share"], 600 << 20)
    rec = Recorder()
    for path, size in picked:
        with open(path, "rb") as f:
            zlib.compress(f.read(), 6)
        rec.done(size)
    rec.write("compress", weighted=True)


def checksum():
    """sha256 of every file of a tree of mixed sizes, weighted by bytes."""
    picked = files_under(["/usr/bin", "/usr/lib/python3", "/usr/libexec"], 1 << 30)
    rec = Recorder()
    for path, size in picked:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        rec.done(size)
    rec.write("checksum", weighted=True)


# Wheels of very different sizes, pinned so that a re-recording downloads the same bytes.
PYPI = [
    "six==1.17.0",
    "idna==3.10",
    "numpy==2.2.6",
    "certifi==2025.4.26",
    "urllib3==2.4.0",
    "packaging==25.0",
    "pandas==2.2.3",
    "attrs==25.3.0",
    "charset-normalizer==3.4.2",
    "pyyaml==6.0.2",
    "requests==2.32.3",
    "click==8.2.1",
    "scipy==1.15.3",
    "jinja2==3.1.6",
    "markupsafe==3.0.2",
    "pytz==2025.2",
    "python-dateutil==2.9.0.post0",
    "pillow==11.2.1",
    "wheel==0.45.1",
    "setuptools==80.9.0",
    "pygments==2.19.1",
    "tzdata==2025.2",
    "cryptography==45.0.3",
    "rich==14.0.0",
    "typing-extensions==4.13.2",
    "pydantic-core==2.33.2",
    "pydantic==2.11.5",
    "sqlalchemy==2.0.41",
    "lxml==5.4.0",
    "filelock==3.18.0",
]


def download():
    """pip downloads wheels from PyPI one after the other, weighted by bytes."""
    dest = Path(tempfile.mkdtemp(prefix="eta-pip-"))
    rec = Recorder()
    for spec in PYPI:
        before = set(dest.iterdir())
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir"]
        cmd += ["--only-binary=:all:", "-q", "-d", str(dest), spec]
        subprocess.run(cmd, check=True)
        (new,) = set(dest.iterdir()) - before
        rec.done(new.stat().st_size)
    shutil.rmtree(dest)
    rec.write("download", weighted=True)


def crates():
    """cargo fetches the workspace's dependencies from crates.io into an empty cargo
    home (parallel downloads), weighted by the bytes of each .crate file. The clock
    starts when cargo starts downloading (`Downloading crates ...`), as its bar does,
    after the index update."""
    home = Path(tempfile.mkdtemp(prefix="eta-cargo-"))
    env = dict(os.environ, CARGO_HOME=str(home))
    rec = None
    got = []
    cmd = ["cargo", "fetch", "--locked"]
    with subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True) as proc:
        for raw in proc.stderr:
            if rec is None and "Downloading crates" in raw:
                rec = Recorder()
            m = re.match(r"^\s*Downloaded (\S+) v(\S+)", raw)
            if m:
                got.append((time.monotonic(), m.group(1), m.group(2)))
    cache = next((home / "registry" / "cache").iterdir())
    for at, name, version in got:
        rec.done((cache / f"{name}-{version}.crate").stat().st_size, at=at)
    shutil.rmtree(home)
    rec.write("crates", weighted=True)


def pgload():
    """A bulk load into PostgreSQL: batches of rows of lognormal sizes inserted into an
    indexed table through one psql session, weighted by rows."""
    db = "herald_eta_scratch"
    psql = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-X", "-q"]
    subprocess.run(psql + ["-c", f"DROP DATABASE IF EXISTS {db}"], check=True)
    subprocess.run(psql + ["-c", f"CREATE DATABASE {db}"], check=True)
    rng = random.Random(17)
    sizes = [max(100, int(rng.lognormvariate(9.0, 1.0))) for _ in range(200)]
    with subprocess.Popen(
        psql + ["-d", db, "-v", "ON_ERROR_STOP=1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    ) as proc:
        proc.stdin.write(
            "CREATE TABLE rows (id bigint, k text, v text);"
            "CREATE INDEX ON rows (k); CREATE INDEX ON rows (id);\n"
        )
        rec = Recorder()
        first = 0
        for idx, n in enumerate(sizes):
            proc.stdin.write(
                f"INSERT INTO rows SELECT g, md5(g::text), repeat(md5(random()::text), 4)"
                f" FROM generate_series({first}, {first + n - 1}) g;\n"
                f"\\echo batch {idx}\n"
            )
            proc.stdin.flush()
            first += n
            line = proc.stdout.readline()
            assert line.strip() == f"batch {idx}", line
            rec.done(n)
        proc.stdin.close()
    subprocess.run(psql + ["-c", f"DROP DATABASE {db}"], check=True)
    rec.write("pgload", weighted=True)


def walk():
    """A directory walk over /usr that stats every entry (as du does): one unit per
    directory."""
    rec = Recorder()
    for dirpath, _dirnames, filenames in os.walk("/usr"):
        for name in filenames:
            with contextlib.suppress(OSError):
                os.lstat(os.path.join(dirpath, name))
        rec.done()
    rec.write("walk", weighted=False)


def llm_batch():
    """The demo's simulated model (heavy-tailed latencies, 4 calls in flight): one unit
    per document classified, from the demo's own JSON progress events."""
    events = Path(tempfile.mkdtemp(prefix="eta-demo-")) / "events.jsonl"
    herald = ROOT / "target" / "debug" / "herald"
    cmd = [str(herald), "demo", "--items", "300", "--seed", "17", "--json"]
    cmd += ["--progress", "json", "--progress-file", str(events)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rec = Recorder()
    start = None
    for raw in events.read_text().splitlines():
        ev = json.loads(raw)
        if ev.get("stage") != "classify":
            continue
        ts = datetime.fromisoformat(ev["ts"]).timestamp()
        if ev["event"] == "stage.started":
            start = ts
        elif ev["event"] == "item.finished":
            rec.done(at=rec.start + ts - start)
    shutil.rmtree(events.parent)
    rec.write("llm-batch", weighted=False)


def dominant():
    """xz -6 over small files, with one large file among them that takes most of the
    run: count only, as a tool that does not know sizes reports it."""
    small = [p for p, n in files_under(["/usr/bin"], 60 << 20) if 20_000 < n < 400_000]
    small = small[:60]
    big = str(ROOT / "target" / "debug" / "herald")
    order = small[:25] + [big] + small[25:]
    rec = Recorder()
    for path in order:
        subprocess.run(["xz", "-6", "-T1", "-c", path], check=True, stdout=subprocess.DEVNULL)
        rec.done()
    rec.write("dominant", weighted=False)


RECIPES = {
    "build": build,
    "tests": tests,
    "compress": compress,
    "checksum": checksum,
    "download": download,
    "crates": crates,
    "pgload": pgload,
    "walk": walk,
    "llm-batch": llm_batch,
    "dominant": dominant,
}


def main(names):
    if names == ["all"]:
        names = list(RECIPES)
    unknown = [n for n in names if n not in RECIPES]
    if not names or unknown:
        sys.exit(f"usage: record.py NAME... | all (names: {', '.join(RECIPES)})")
    for name in names:
        RECIPES[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
