"""Sizes and durations written the way Spark users write them."""

from __future__ import annotations

import math
import re

_SIZE = re.compile(r"^\s*(\d+)\s*([kmgtp]?)(?:i?b)?\s*$", re.IGNORECASE)
_SIZE_FACTORS_MIB = {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024**2, "p": 1024**3}

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", re.IGNORECASE)
_DURATION = re.compile(r"^(?:\s*\d+(?:\.\d+)?\s*(?:ms|s|m|h|d)\s*)+$", re.IGNORECASE)
_NUMBER = re.compile(r"^\s*\d+(?:\.\d+)?\s*$")
_DURATION_FACTORS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_memory_mib(value: str | int) -> int:
    """Parse a JVM memory string (`512m`, `2g`, `1024`) into MiB, as spark-submit does.

    A bare number means MiB (Spark's default unit for driver and executor memory). Raises
    ValueError with a readable message for anything else, including zero and negatives.
    """
    if isinstance(value, bool):
        raise ValueError("must be a size such as 512m or 2g")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("must be a positive size such as 512m or 2g")
        return value
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a size: use a number with k, m, g or t (512m, 2g)")
    number, unit = int(match.group(1)), (match.group(2) or "m").lower()
    mib = number * _SIZE_FACTORS_MIB[unit]
    if mib < 1:
        raise ValueError(f"{value!r} is too small: at least 1m")
    return int(mib)


def format_memory(mib: int) -> str:
    """The shortest JVM memory string for a size in MiB (`2g`, `1536m`)."""
    return f"{mib // 1024}g" if mib % 1024 == 0 else f"{mib}m"


_MAX_DURATION_SECONDS = 10 * 366 * 86400.0


def parse_duration_seconds(value: str | int | float) -> float:
    """Parse `90`, `90s`, `30m`, `2h`, `1h30m`, `1d` into seconds (> 0), else ValueError."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 90s, 30m or 2h")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        if _NUMBER.match(value):
            seconds = float(value)
        elif _DURATION.match(value):
            seconds = sum(
                float(number) * _DURATION_FACTORS[unit.lower()]
                for number, unit in _DURATION_PART.findall(value)
            )
        else:
            raise ValueError(f"{value!r} is not a duration: use 90s, 30m, 2h, 1h30m or 1d")
    # NaN compares false with everything, and infinity passes every "at most": both refused.
    if not math.isfinite(seconds) or seconds > _MAX_DURATION_SECONDS:
        raise ValueError("must be a finite duration of at most 10 years")
    if seconds <= 0:
        raise ValueError("must be a positive duration")
    return seconds
