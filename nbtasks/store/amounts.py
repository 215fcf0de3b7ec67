"""Sizes and ages as people write them ("5GB", "30d"), read strictly: a typo is an error
that says what is accepted, never a silent zero."""

from __future__ import annotations

import datetime
import math
import re

__all__ = ["parse_size", "parse_age", "format_size"]

_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([kmgtp]?)(i?)(b?)\s*", re.IGNORECASE)
_AGE = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(s|sec|min|h|d|w)\s*", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}
_SECONDS = {"s": 1, "sec": 1, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_size(value: "int | float | str") -> int:
    """Bytes from ``value``: a number of bytes, or text like ``"5GB"`` (powers of 1000),
    ``"5GiB"`` (powers of 1024), ``"500M"`` or ``"1.5 TB"``."""
    if isinstance(value, bool):
        raise TypeError(f"a size must be a number of bytes or a text like '5GB', not {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"a size must be a finite number of bytes, 0 or more, not {value!r}")
        return int(value)
    if not isinstance(value, str):
        raise TypeError(f"a size must be a number of bytes or a text like '5GB', not {type(value).__name__}")
    match = _SIZE.fullmatch(value)
    if match is None or (match[3] and not match[2]):
        raise ValueError(f"not a size: {value!r} (write bytes, or e.g. '500MB', '5GB', '5GiB', '1.5TB')")
    number, prefix, binary = float(match[1]), match[2].lower(), bool(match[3])
    return int(number * (1024 if binary else 1000) ** _POWERS[prefix])


def parse_age(value: "int | float | str | datetime.timedelta") -> float:
    """Seconds from ``value``: a number of seconds, a ``datetime.timedelta``, or text
    like ``"30d"``, ``"12h"``, ``"90min"``, ``"2w"``, ``"45s"``."""
    if isinstance(value, bool):
        raise TypeError(f"an age must be seconds, a datetime.timedelta or a text like '30d', not {value!r}")
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        match = _AGE.fullmatch(value)
        if match is None:
            months = value.strip().lower().endswith("m")
            hint = " ('m' could be minutes or months: write 'min' or 'd')" if months else ""
            raise ValueError(f"not an age: {value!r} (write seconds, or e.g. '30d', '12h', '90min', '2w'){hint}")
        seconds = float(match[1]) * _SECONDS[match[2].lower()]
    else:
        raise TypeError(f"an age must be seconds, a datetime.timedelta or a text like '30d', "
                        f"not {type(value).__name__}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"an age must be 0 or more, not {value!r}")
    return seconds


def format_size(n: "int | None") -> str:
    """``1234567`` -> ``'1.2 MB'`` (powers of 1000, as disks are sold)."""
    if n is None:
        return "no limit"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")
