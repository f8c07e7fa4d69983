"""Fixtures: a real `herald serve` (from `HERALD_BIN`) on a free port with a data dir of
its own, that a test may SIGKILL and start again on the same port and data; the
protocol's JSON Schema (the checked-in file, not a copy); waiting on conditions.

Under `CI=true` a missing part (the herald binary, a package) fails the test; elsewhere
it is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest
from llm_server import Capture, LlmServer

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "crates" / "herald-protocol" / "schema" / "event-v1.schema.json"
SRC = ROOT / "python" / "src"


def missing(what: str) -> None:
    """A part the test needs is absent: a failure under CI=true, a skip elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} (CI=true makes this a failure)")
    pytest.skip(what)


def wait_until(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Polls `cond` until it returns something truthy, or fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class Hub:
    """A `herald serve` process."""

    def __init__(self, binary: str, data_dir: Path) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.addr = "127.0.0.1:0"
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self, extra: tuple = ()) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--addr", self.addr, "--data-dir", str(self.data_dir), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        prefix = "herald hub listening on http://"
        if not line.startswith(prefix):
            self.proc.kill()
            raise AssertionError(f"herald serve printed {line!r}, not its address")
        self.addr = line[len(prefix) :].strip()
        self.url = f"http://{self.addr}"

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.proc = None

    def restart(self) -> None:
        """The same port and data as before (the port may take a moment to be free)."""
        deadline = time.monotonic() + 10
        while True:
            try:
                self.start()
                return
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None

    def get(self, path: str, token: str | None = None) -> Any:
        request = urllib.request.Request(self.url + path)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def post(self, path: str, body: Any) -> Any:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def state(self, run: str) -> Any:
        return self.get(f"/v1/runs/{run}")

    def count(self, run: str, event: str) -> int:
        """How many `event`s the run has on the hub (0 before it exists)."""
        try:
            return sum(e["event"] == event for e in self.events(run))
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return 0
            raise

    def events(self, run: str) -> list:
        out: list = []
        after = 0
        while True:
            page = self.get(f"/v1/runs/{run}/events?after={after}&limit=1000")
            out.extend(page["events"])
            if not page["events"]:
                return out
            after = page["events"][-1]["seq"]

    def finished_state(self, run: str, timeout: float = 10.0) -> Any:
        def done() -> Any:
            try:
                state = self.state(run)
            except urllib.error.HTTPError:
                return None
            return state if state.get("finished_at") else None

        return wait_until(done, timeout, f"run {run} finished on the hub")


@pytest.fixture
def server():
    """A local model server replaying recorded replies."""
    s = LlmServer()
    yield s
    s.close()


@pytest.fixture
def cap():
    """A herald run whose model-call events are kept in memory."""
    c = Capture()
    yield c
    c.close()


@pytest.fixture
def herald_bin() -> str:
    binary = os.environ.get("HERALD_BIN")
    if not binary or not os.access(binary, os.X_OK):
        missing("HERALD_BIN does not name a herald binary (cargo test sets it)")
    return binary  # type: ignore[return-value]


@pytest.fixture
def hub(herald_bin: str, tmp_path: Path):
    hub = Hub(herald_bin, tmp_path / "hub-data")
    hub.start()
    yield hub
    hub.stop()


@pytest.fixture(scope="session")
def validator():
    try:
        import jsonschema
    except ImportError:
        missing("jsonschema is not installed")
    schema = json.loads(SCHEMA.read_text())
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def run_python(code: str, env: dict | None = None, timeout: float = 60, **kw: Any):
    """Runs `code` in a fresh interpreter with this package on its path."""
    full = dict(os.environ)
    full["PYTHONPATH"] = str(SRC)
    for key in list(full):
        if key.startswith("HERALD_") and key != "HERALD_BIN":
            del full[key]
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", code],
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )
