"""tqdm: `from herald import tqdm` is a drop-in for `tqdm.tqdm`, and `capture_tqdm`
mirrors other code's bars as stages of the current run."""

from __future__ import annotations

import inspect
import io
import json

import pytest

import herald
from conftest import run_python


@pytest.fixture(autouse=True)
def _tqdm_installed():
    try:
        import tqdm  # noqa: F401
    except ImportError:
        from conftest import missing

        missing("tqdm is not installed")


def memory():
    sink = herald.MemorySink()
    return herald.Progress([herald.Target.memory(sink)]), sink


def stages(sink: herald.MemorySink) -> dict:
    out: dict = {}
    for e in sink.events:
        if e["event"] == "stage.started":
            out[e["stage"]] = {"total": e.get("total"), "unit": e.get("unit"), "done": 0}
        elif e["event"] == "progress" and e.get("stage") in out:
            out[e["stage"]]["done"] = e["done"]
        elif e["event"] == "stage.finished":
            out[e["stage"]]["status"] = e["status"]
            out[e["stage"]]["error"] = e.get("error")
    return out


def test_herald_tqdm_has_tqdms_signature_and_bar() -> None:
    import tqdm

    from herald import tqdm as htqdm

    assert issubclass(htqdm, tqdm.tqdm)
    assert inspect.signature(htqdm.__init__).parameters.keys() <= {"self", "args", "kwargs"}
    assert inspect.signature(tqdm.tqdm.__init__) == inspect.signature(htqdm.__mro__[1].__init__)
    out = io.StringIO()
    progress, sink = memory()
    with progress.run("drop-in"):
        result = [x * 2 for x in htqdm(range(50), desc="double", file=out, mininterval=0)]
    assert result == [x * 2 for x in range(50)]
    assert "double: 100%" in out.getvalue()  # tqdm's own bar is still drawn
    assert stages(sink)["double"] == {
        "total": 50,
        "unit": None,
        "done": 50,
        "status": "succeeded",
        "error": None,
    }


def test_herald_tqdm_update_and_a_failed_with_block() -> None:
    from herald import tqdm

    progress, sink = memory()
    with (
        pytest.raises(OSError),
        progress.run("bytes"),
        tqdm(total=1000, unit="B", desc="upload", file=io.StringIO()) as bar,
    ):
        bar.update(300)
        bar.update(200)
        raise OSError("connection reset")
    stage = stages(sink)["upload"]
    assert (stage["total"], stage["unit"], stage["done"]) == (1000, "B", 500)
    assert (stage["status"], stage["error"]) == ("failed", "OSError: connection reset")


def test_herald_tqdm_with_no_run_open_reports_a_run_of_its_own(tmp_path) -> None:
    path = tmp_path / "p.jsonl"
    code = """
from herald import tqdm, trange
for _ in tqdm(range(7), desc="alone"):
    pass
for _ in trange(3):
    pass
"""
    out = run_python(code, env={"HERALD_PROGRESS_FILE": str(path)})
    assert out.returncode == 0, out.stderr
    assert "alone: 100%" in out.stderr  # tqdm's bar, no JSON beside it
    events = [json.loads(line) for line in path.read_text().splitlines()]
    runs = [e for e in events if e["event"] == "run.started"]
    assert [r["name"] for r in runs] == ["alone", "tqdm"]
    ends = [e for e in events if e["event"] == "run.finished"]
    assert [e["status"] for e in ends] == ["succeeded", "succeeded"]
    done = [e["done"] for e in events if e["event"] == "progress"]
    assert 7 in done and 3 in done


def test_capture_tqdm_mirrors_other_codes_bars_until_stopped() -> None:
    import tqdm
    import tqdm.auto

    def library_download() -> None:  # code that knows nothing of herald
        for _ in tqdm.tqdm(range(30), desc="Downloading: ", unit="files", file=io.StringIO()):
            pass

    def library_load() -> None:
        bar = tqdm.auto.tqdm(total=4, desc="Loading checkpoint shards", file=io.StringIO())
        for _ in range(4):
            bar.update(1)
        bar.close()

    progress, sink = memory()
    with progress.run("fine-tune") as run:
        with herald.capture_tqdm():
            library_download()
            library_load()
            library_download()  # the same name again: a stage of its own
            tqdm.tqdm(range(3), disable=True).close()  # a disabled bar is left alone
        library_download()  # after the capture: not mirrored
        run.finish()
    ok = {"status": "succeeded", "error": None}
    assert stages(sink) == {
        "Downloading": {"total": 30, "unit": "files", "done": 30, **ok},
        "Loading checkpoint shards": {"total": 4, "unit": None, "done": 4, **ok},
        "Downloading (2)": {"total": 30, "unit": "files", "done": 30, **ok},
    }
    assert tqdm.tqdm.__init__ is tqdm.std.tqdm.__init__
    assert "patched" not in tqdm.tqdm.__init__.__qualname__


def test_capture_tqdm_without_a_run_leaves_bars_alone() -> None:
    import tqdm

    with herald.capture_tqdm():
        assert herald.current_run() is None or herald.current_run().finished is False
        bar = tqdm.tqdm(range(2), file=io.StringIO())
        list(bar)
    with pytest.raises(TypeError, match="run"):
        herald.capture_tqdm(run="x")  # type: ignore[arg-type]
