"""Units written in the configuration: durations and rates."""

from __future__ import annotations

import re
from typing import Any


class Duration(float):
    """Seconds, written in YAML as ``250ms``, ``10s``, ``2m`` or a bare number of seconds."""

    _UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0}
    _PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")

    @classmethod
    def parse(cls, value: Any) -> "Duration":
        if isinstance(value, bool):
            raise ValueError("expected a duration such as 500ms, 10s or 2m, got a boolean")
        if isinstance(value, (int, float)):
            seconds = float(value)
        elif isinstance(value, str) and (match := cls._PATTERN.match(value)):
            seconds = float(match.group(1)) * cls._UNITS[match.group(2) or "s"]
        else:
            raise ValueError(f"expected a duration such as 500ms, 10s or 2m, got {value!r}")
        if not 0 <= seconds <= 86400:
            raise ValueError(f"duration {value!r} is out of range (0 to 24h)")
        return cls(seconds)


class Rate(float):
    """Bits per second, written like tc: ``50Mbit``, ``500kbit``, ``1Gbit`` or a bare number."""

    _UNITS = {"bit": 1.0, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}
    _PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?bit)?\s*$", re.IGNORECASE)

    @classmethod
    def parse(cls, value: Any) -> "Rate":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            bits = float(value)
        elif isinstance(value, str) and (match := cls._PATTERN.match(value)):
            bits = float(match.group(1)) * cls._UNITS[(match.group(2) or "bit").lower()]
        else:
            raise ValueError(f"expected a rate such as 500kbit, 50Mbit or 1Gbit, got {value!r}")
        if not 8_000 <= bits <= 1e12:
            raise ValueError(f"rate {value!r} is out of range (8kbit to 1000Gbit)")
        return cls(bits)

    @property
    def bytes_per_second(self) -> int:
        return int(self / 8)
