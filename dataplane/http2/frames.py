"""HTTP/2 frames as bytes (RFC 9113 section 4 and 6): types, flags, error
codes, settings, and the frames a server writes. No I/O."""

from __future__ import annotations

import enum
import struct
from typing import Callable

from ..http.codec import H2_PREFACE

PREFACE = H2_PREFACE

# Frame types
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)

# Flags
END_STREAM = ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

# SETTINGS parameters
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, \
    MAX_HEADER_LIST_SIZE = range(1, 7)

MAX_WINDOW = 2**31 - 1
DEFAULT_WINDOW = 65535
DEFAULT_FRAME = 16384


class Code(enum.IntEnum):
    """Error codes (section 7)."""
    NO_ERROR = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2
    FLOW_CONTROL_ERROR = 3
    SETTINGS_TIMEOUT = 4
    STREAM_CLOSED = 5
    FRAME_SIZE_ERROR = 6
    REFUSED_STREAM = 7
    CANCEL = 8
    COMPRESSION_ERROR = 9
    CONNECT_ERROR = 10
    ENHANCE_YOUR_CALM = 11
    INADEQUATE_SECURITY = 12
    HTTP_1_1_REQUIRED = 13


class ConnectionFailure(Exception):
    """A connection error (section 5.4.1): GOAWAY with ``code``, then close."""

    def __init__(self, code: Code, reason: str) -> None:
        super().__init__(reason)
        self.code = code


_HEAD = struct.Struct(">HBBBL")          # length (24 bits as 16 + 8), type, flags, stream id
_pack_head = _HEAD.pack


def frame(kind: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    length = len(payload)
    return _pack_head(length >> 8, length & 0xFF, kind, flags, sid) + payload


def head_of(data: bytes, at: int) -> tuple[int, int, int, int]:
    """The frame header at ``at``: length, type, flags, stream id."""
    high, low, kind, flags, sid = _HEAD.unpack_from(data, at)
    return (high << 8) | low, kind, flags, sid & 0x7FFFFFFF


def each(data: bytes, at: int, limit: int,
         frame: Callable[[int, int, int, bytes], None]) -> int:
    """Call ``frame(type, flags, stream id, payload)`` for every whole frame in
    ``data`` from ``at``; where the first incomplete one starts. A frame over
    ``limit`` (our MAX_FRAME_SIZE) raises ConnectionFailure."""
    end = len(data)
    while end - at >= 9:
        length, kind, flags, sid = head_of(data, at)
        if length > limit:
            raise ConnectionFailure(Code.FRAME_SIZE_ERROR, f"frame of {length} bytes")
        stop = at + 9 + length
        if stop > end:
            break
        frame(kind, flags, sid, data[at + 9:stop])
        at = stop
    return at


def settings(values: dict[int, int]) -> bytes:
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HL", key, value)
                                          for key, value in values.items()))


def window_update(sid: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, sid, struct.pack(">L", increment))


def rst_stream(sid: int, code: int) -> bytes:
    return frame(RST_STREAM, 0, sid, struct.pack(">L", code))


def goaway(last: int, code: int) -> bytes:
    return frame(GOAWAY, 0, 0, struct.pack(">LL", last, code))


def headers(sid: int, block: bytes, end: bool, max_frame: int) -> bytes:
    """HEADERS, then CONTINUATION frames for what does not fit in one."""
    flags = END_STREAM if end else 0
    if len(block) <= max_frame:
        return frame(HEADERS, flags | END_HEADERS, sid, block)
    pieces = [block[at:at + max_frame] for at in range(0, len(block), max_frame)]
    out = [frame(HEADERS, flags, sid, pieces[0])]
    out += [frame(CONTINUATION, 0, sid, piece) for piece in pieces[1:-1]]
    out.append(frame(CONTINUATION, END_HEADERS, sid, pieces[-1]))
    return b"".join(out)


def read_settings(payload: bytes) -> list[tuple[int, int]]:
    """A SETTINGS frame's (parameter, value) pairs, each within what section
    6.5.2 allows a peer to set; raises ConnectionFailure."""
    if len(payload) % 6:
        raise ConnectionFailure(Code.FRAME_SIZE_ERROR, "SETTINGS of the wrong size")
    pairs = [struct.unpack_from(">HL", payload, at) for at in range(0, len(payload), 6)]
    for key, value in pairs:
        if key == INITIAL_WINDOW_SIZE and value > MAX_WINDOW:
            raise ConnectionFailure(Code.FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE too large")
        if key == MAX_FRAME_SIZE and not DEFAULT_FRAME <= value <= 2**24 - 1:
            raise ConnectionFailure(Code.PROTOCOL_ERROR, "MAX_FRAME_SIZE out of range")
        if key == ENABLE_PUSH and value > 1:
            raise ConnectionFailure(Code.PROTOCOL_ERROR, "ENABLE_PUSH neither 0 nor 1")
    return pairs


def window_increment(sid: int, payload: bytes) -> int:
    """A WINDOW_UPDATE's increment (0 is an error on the connection, and a
    stream error on a stream: section 6.9); raises ConnectionFailure."""
    if len(payload) != 4:
        raise ConnectionFailure(Code.FRAME_SIZE_ERROR, "WINDOW_UPDATE of the wrong size")
    increment = u32(payload) & 0x7FFFFFFF
    if not increment and not sid:
        raise ConnectionFailure(Code.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
    return increment


def ping_answer(flags: int, sid: int, payload: bytes) -> bytes:
    """What a PING asks for: its acknowledgement (nothing for an ACK)."""
    if sid:
        raise ConnectionFailure(Code.PROTOCOL_ERROR, "PING on a stream")
    if len(payload) != 8:
        raise ConnectionFailure(Code.FRAME_SIZE_ERROR, "PING of the wrong size")
    return b"" if flags & ACK else frame(PING, ACK, 0, payload)


def u32(data: bytes, at: int = 0) -> int:
    value: int = struct.unpack_from(">L", data, at)[0]
    return value


def unpad(payload: bytes) -> bytes:
    """A PADDED frame's payload without its pad length and padding."""
    if not payload:
        raise ConnectionFailure(Code.FRAME_SIZE_ERROR, "padded frame without a pad length")
    pad = payload[0]
    if pad >= len(payload):
        raise ConnectionFailure(Code.PROTOCOL_ERROR, "padding longer than the frame")
    return payload[1:len(payload) - pad]
