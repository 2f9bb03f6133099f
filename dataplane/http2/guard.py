"""What a client may do to an HTTP/2 connection before it is sent GOAWAY
ENHANCE_YOUR_CALM: streams it resets (rapid reset, CVE-2023-44487) and
frames that cost work without carrying a request (PING, SETTINGS,
WINDOW_UPDATE, PRIORITY, empty DATA), each counted per second. Busy
connections send such frames with their requests (a gRPC client's window
updates and bandwidth-probing PINGs come with every call), so each stream
opened in a second raises that second's control-frame budget by
``PER_STREAM`` (Envoy bounds the same by a ratio to the DATA it sends). No
I/O, no clock: the caller passes ``now``."""

from __future__ import annotations

PER_STREAM = 10      # control frames a stream opened explains, within its second


class Budget:
    """At most ``limit`` events in any one-second window (counted in whole
    seconds: a burst may reach twice the limit across a second's edge)."""
    __slots__ = ("limit", "second", "count")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.second = -1
        self.count = 0

    def spend(self, now: float, events: int = 1) -> bool:
        """``events`` more at ``now`` (fewer, if negative); False once over the limit."""
        second = int(now)
        if second != self.second:
            self.second, self.count = second, 0
        self.count += events
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

    def stream_opened(self, now: float) -> None:
        self.control.spend(now, -PER_STREAM)

    def control_frame(self, now: float) -> bool:
        if not self.control.spend(now):
            self.calm = "control frames faster than http2.max_control_frames_per_second"
        return not self.calm
