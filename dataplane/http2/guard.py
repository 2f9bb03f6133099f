"""What a client may do to an HTTP/2 connection before it is sent GOAWAY
ENHANCE_YOUR_CALM: streams it resets (rapid reset, CVE-2023-44487) and
frames that cost work without carrying a request (PING, SETTINGS,
WINDOW_UPDATE, PRIORITY, empty DATA), each counted per second. No I/O, no
clock: the caller passes ``now``."""

from __future__ import annotations


class Budget:
    """At most ``limit`` events in any one-second window (counted in whole
    seconds: a burst may reach twice the limit across a second's edge)."""
    __slots__ = ("limit", "second", "count")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.second = -1
        self.count = 0

    def spend(self, now: float) -> bool:
        """One more event at ``now``; False once over the limit."""
        second = int(now)
        if second != self.second:
            self.second, self.count = second, 0
        self.count += 1
        return self.count <= self.limit


class Guard:
    """One connection's budgets; ``calm`` names the one overdrawn, if any."""
    __slots__ = ("resets", "control", "calm")

    def __init__(self, resets_per_second: int, control_per_second: int) -> None:
        self.resets = Budget(resets_per_second)
        self.control = Budget(control_per_second)
        self.calm = ""

    def reset(self, now: float) -> bool:
        """The client reset a stream; False: too many, too fast."""
        if not self.resets.spend(now):
            self.calm = "streams reset faster than http2.max_resets_per_second"
        return not self.calm

    def control_frame(self, now: float) -> bool:
        if not self.control.spend(now):
            self.calm = "control frames faster than http2.max_control_frames_per_second"
        return not self.calm
