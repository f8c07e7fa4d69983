"""The events as herald writes them: timestamps, number rounding, the JSON Lines shape,
and the checks that turn bad arguments into TypeError/ValueError at the call.

Mirrors crates/herald/src/dispatch.rs (rounding) and the protocol's envelope order
(`v`, `event`, `run`, `seq`, `ts`, `id`, `parent`, then the type's fields).
"""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any

# Ticks: what a full queue refuses first (crates/herald-protocol `is_milestone`).
TICK_EVENTS = frozenset({"progress", "heartbeat", "text.delta"})

_RUN_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_CUSTOM = re.compile(r"[a-z0-9_]+")

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def is_milestone(event: str, fields: dict[str, Any]) -> bool:
    if event in TICK_EVENTS:
        return False
    if event == "log":
        return fields.get("level") in ("warn", "error")
    return True


def now_micros() -> int:
    return time.time_ns() // 1000


_ts_cache: list[Any] = [None, ""]


def format_ts(micros: int) -> str:
    """`2026-12-05T19:00:05.000000Z`: UTC, six fractional digits."""
    secs, frac = divmod(micros, 1_000_000)
    if _ts_cache[0] != secs:
        _ts_cache[0] = secs
        _ts_cache[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    return f"{_ts_cache[1]}.{frac:06d}Z"


def round_seconds(s: float) -> float:
    """Seconds as events carry them: to the millisecond (half away from zero, as Rust)."""
    return math.floor(max(s, 0.0) * 1000.0 + 0.5) / 1000.0


def round_percent(p: float) -> float:
    return math.floor(p * 10.0 + 0.5) / 10.0


def round_rate(r: float) -> float:
    """To four significant digits."""
    if r == 0.0 or not math.isfinite(r):
        return r
    scale = 10.0 ** (3 - math.floor(math.log10(abs(r))))
    return math.floor(r * scale + 0.5) / scale


def encode_line(
    event: str,
    run: str,
    seq: int,
    ts: str,
    fields: dict[str, Any],
    parent: str | None = None,
    id: str | None = None,  # noqa: A002 - the protocol's name
) -> str:
    """One stored event as one JSON line (without the newline), envelope first."""
    head = {"v": 1, "event": event, "run": run, "seq": seq, "ts": ts}
    if id is not None:
        head["id"] = id
    if parent is not None:
        head["parent"] = parent
    for k, v in fields.items():
        if v is not None:
            head[k] = v
    return _encode(head)


def to_json_text(value: Any) -> str:
    return _encode(value)


# --- argument checks: every message names the argument --------------------------------


def check_str(name: str, value: Any, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if not empty and not value:
        raise ValueError(f"{name} must not be empty")
    return value


def check_opt_str(name: str, value: Any) -> str | None:
    if value is None:
        return None
    return check_str(name, value, empty=True)


def check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be 0 or more, not {value}")
    if value > 2**64 - 1:
        raise ValueError(f"{name} must be at most 2**64-1")
    return int(value)


def check_opt_count(name: str, value: Any) -> int | None:
    return None if value is None else check_count(name, value)


def check_seconds(name: str, value: Any, *, zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        least = "0 or more" if zero else "positive"
        raise ValueError(f"{name} must be a finite {least} number of seconds, not {value}")
    return float(value)


def check_run_id(name: str, value: Any) -> str:
    check_str(name, value)
    if not _RUN_ID.fullmatch(value):
        raise ValueError(f"{name} must be 1 to 128 characters of [A-Za-z0-9._:-], not {value!r}")
    return str(value)


def check_custom_name(value: Any) -> str:
    check_str("name", value)
    if not _CUSTOM.fullmatch(value):
        raise ValueError(f"name must be one or more of [a-z0-9_] (custom.<name>), not {value!r}")
    return str(value)


def check_json(name: str, value: Any) -> Any:
    """`value` if it is JSON (dicts with str keys, lists, str, numbers, bools, None)."""
    try:
        _encode(value)
    except TypeError as e:
        raise TypeError(f"{name} is not JSON-serialisable: {e}") from None
    except ValueError as e:
        raise ValueError(f"{name} is not JSON-serialisable: {e}") from None
    return value


def describe_exception(exc: BaseException) -> str:
    """`ValueError: bad row 7`: the exception's type and message."""
    text = str(exc)
    name = type(exc).__name__
    return f"{name}: {text}" if text else name
