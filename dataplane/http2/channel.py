"""One request's stream on a multiplexed backend connection, standing where
an HTTP/1.1 connection stands for whoever sends the request (the fast lane,
or an Exchange): they write HTTP/1.1 bytes to its ``stream`` and read
HTTP/1.1 bytes back in ``on_upstream_data``, and the session (upstream.py)
turns both into frames.

The request side: the bytes go through an httptools request parser of the
channel's own, whose callbacks give the session a header block, body DATA
and trailers. Flow control: DATA beyond the backend's windows waits here
(``pending`` to the writer, which stops reading its client as for a slow
HTTP/1.1 backend); response DATA is granted back as it is taken, and not
while the writer has stopped reading. No socket of its own: never spliced.
"""

from __future__ import annotations

from typing import Callable, Protocol

import httptools

from ..http.codec import REASONS
from ..io.stream import Stream
from ..upstream.connection import Multiplexed, UpstreamConnection
from .fields import CONNECTION_SPECIFIC
from .hpack_codec import Headers


class Carrier(Multiplexed, Protocol):
    """What a channel asks of its session (upstream.Session)."""
    conn: UpstreamConnection
    stream: Stream
    scheme: bytes

    def request_block(self, method: bytes, url: bytes, fields: Headers) -> Headers: ...
    def open_stream(self, channel: "Channel", block: Headers, end: bool) -> None: ...
    def send(self, channel: "Channel", data: bytes, end: bool) -> None: ...
    def send_trailers(self, channel: "Channel", trailers: Headers) -> None: ...
    def consumed(self, sid: int, size: int) -> None: ...


class ChannelStream(Stream):
    """The byte stream an exchange writes to and pauses: its stream's request."""
    __slots__ = ("channel",)

    def __init__(self, channel: "Channel") -> None:
        super().__init__()
        self.channel = channel
        self.write = channel.take
        self.fd = -2

    @property
    def plain(self) -> bool:
        return False         # frames on a shared connection: never spliced

    @property
    def pending(self) -> int:
        carrier = self.channel.carrier.stream
        return sum(map(len, self.channel.queue)) + (carrier.pending if carrier.queued else 0)

    def when_drained(self, callback: Callable[[], None]) -> None:
        if self.channel.queue:
            self.channel.drained.append(callback)
        else:
            self.channel.carrier.stream.when_drained(callback)

    def stop_reading(self) -> None:
        self.reading = False          # response DATA is not granted back meanwhile

    def start_reading(self) -> None:
        if not self.reading:
            self.reading = True
            self.channel.granted()

    def close(self) -> None:
        self.closed = True


class Channel(UpstreamConnection):
    """One request's stream on a session, as its sender sees a connection."""
    __slots__ = ("carrier", "parser", "sid", "url", "fields", "head", "trailers", "queue",
                 "ending", "drained", "withheld", "spent", "head_request", "chunked",
                 "out", "source")

    def __init__(self, carrier: Carrier) -> None:
        # Not the connection's __init__: no socket, no pool slot of its own.
        conn = carrier.conn
        self.pool, self.slot, self.host, self.sock = conn.pool, conn.slot, conn.host, conn.sock
        self.carrier = carrier
        self.session = carrier          # for the pool: it ends the stream, not a connection
        self.user = None
        self.reader = None
        self.requests = 0
        self.idle_since = 0.0
        self.counted = False
        self.parser = httptools.HttpRequestParser(self)
        self.spent = False            # the parser takes no further request
        self.stream = ChannelStream(self)
        self.reset()

    def reset(self) -> None:
        """Ready for the next request."""
        if self.spent:
            self.parser = httptools.HttpRequestParser(self)
            self.spent = False
        self.sid = 0
        self.url = b""
        self.fields: Headers = []
        self.head: Headers | None = None      # the request's block, until sent
        self.trailers: Headers | None = None
        self.queue: list[bytes] = []          # DATA beyond the windows
        self.ending = False                   # END_STREAM is due after the queue
        self.drained: list[Callable[[], None]] = []
        self.withheld = 0                     # response bytes not yet granted back
        self.head_request = False
        self.source = b""                     # the request's first bytes, as written
        self.chunked = False                  # the response goes to the reader chunked
        self.out: list[bytes] = []            # response bytes for the reader, this read
        self.stream.reading = True
        self.stream.closed = False

    # -- the request, as httptools reads the exchange's bytes -------------------
    def take(self, data: bytes) -> None:
        """The sender's bytes for the backend (ChannelStream.write). A whole
        bodiless request seen before becomes its header block at once."""
        if self.trailers is None:           # the request's first bytes
            known = _requests.get(data)
            if known is not None and known[0][1][1] == self.carrier.scheme:
                self.head_request = known[1]
                self.carrier.open_stream(self, known[0], True)
                return
            self.source = data
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.spent = True          # sent without its Upgrade; the answer will not be a 101
        except httptools.HttpParserError:
            self.spent = True          # our own bytes: cannot happen, but never a crash
            self.carrier.ended(self, False)

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.trailers is not None:
            self.trailers.append((name.lower(), value))
        else:
            self.fields.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        method = self.parser.get_method()
        self.head_request = method == b"HEAD"
        self.head = self.carrier.request_block(method, self.url, self.fields)
        self.trailers = []

    def on_body(self, body: bytes) -> None:
        self._open(False)
        self.carrier.send(self, body, False)

    def on_message_complete(self) -> None:
        self.spent = not self.parser.should_keep_alive()
        head = self.head
        if self._open(True):
            if head is not None and not self.spent:
                if len(_requests) >= _KEPT:
                    _requests.clear()
                _requests[self.source] = (head, self.head_request)
            return
        trailers = [(n, v) for n, v in self.trailers or () if n not in CONNECTION_SPECIFIC]
        if trailers:
            self.carrier.send_trailers(self, trailers)
        else:
            self.carrier.send(self, b"", True)

    def _open(self, end: bool) -> bool:
        """HEADERS, once; True if they ended the stream."""
        head, self.head = self.head, None
        if head is None:
            return False
        self.carrier.open_stream(self, head, end)
        return end

    # -- flow control ---------------------------------------------------------
    def granted(self) -> None:
        withheld, self.withheld = self.withheld, 0
        if withheld and self.sid:
            self.carrier.consumed(self.sid, withheld)

    def took(self, size: int) -> None:
        """``size`` response bytes went to the reader; granted back unless held back."""
        if self.stream.reading:
            self.carrier.consumed(self.sid, size)
        else:
            self.withheld += size

    # -- the response, as HTTP/1.1 bytes for the reader ---------------------------
    def response_head(self, block: Headers, ended: bool) -> None:
        """A response head (checked by the codec: ``:status`` first, fields
        that cannot break HTTP/1.1 framing). Without content-length the frames
        end the body: it goes chunked, so trailers can follow. A head the
        codec decoded before is the same list: its bytes are kept with it."""
        known = _heads.get(id(block))
        if known is None or known[0] is not block or known[1] != self.head_request:
            known = _head(block, self.head_request)
            if len(_heads) >= _KEPT:
                _heads.clear()
            _heads[id(block)] = known
        self.chunked = chunked = known[2]
        self.out.append(known[3])
        if ended and chunked:
            self.out.append(b"0\r\n\r\n")

    def response_body(self, data: bytes, ended: bool) -> None:
        if data:
            self.out.append(b"%x\r\n%b\r\n" % (len(data), data) if self.chunked else data)
        if ended and self.chunked:
            self.out.append(b"0\r\n\r\n")

    def response_trailers(self, block: Headers) -> None:
        """Trailers end a chunked body (HTTP/1.1 has none after a length)."""
        if self.chunked:
            self.out.append(b"0\r\n%b\r\n" % b"".join(b"%b: %b\r\n" % field
                                                        for field in block))

    def taken(self) -> bytes:
        out = self.out
        data = b"".join(out)
        out.clear()
        return data


def _head(block: Headers, head_request: bool) -> tuple[Headers, bool, bool, bytes]:
    """(block, head_request, chunked, the HTTP/1.1 head)."""
    status = block[0][1]
    lines = [b"HTTP/1.1 %b %b\r\n" % (status, REASONS.get(int(status), b""))]
    length = False
    for name, value in block[1:]:
        lines.append(b"%b: %b\r\n" % (name, value))
        length = length or name == b"content-length"
    chunked = not (length or head_request or status in _BODILESS)
    lines.append(b"transfer-encoding: chunked\r\n\r\n" if chunked else b"\r\n")
    return block, head_request, chunked, b"".join(lines)


_BODILESS = (b"204", b"304")
_heads: dict[int, tuple[Headers, bool, bool, bytes]] = {}
# Bodiless requests (as written, whole) and their header blocks, per worker:
# a client that repeats a request, a health checker, a poller, costs one lookup.
_KEPT = 1024
_requests: dict[bytes, tuple[Headers, bool]] = {}
