"""HTTP/2 to a backend (``protocol: h2`` over TLS with ALPN, ``h2c`` in
cleartext): one pooled connection carries many requests, each on a stream
of its own (docs/http2.md).

The pool (upstream/pool.py) keeps a ``Session`` per connection and asks it
for a ``Channel`` per request: room for one more stream within the
backend's SETTINGS_MAX_CONCURRENT_STREAMS, else the pool opens another
connection or queues the request. A Channel stands where an HTTP/1.1
connection stands for an Exchange, so the general path is the same for both:
the exchange writes its request as HTTP/1.1 bytes (the head it built, the
body framed as the client framed it), which the channel's request parser
turns into HEADERS, DATA and trailers; the response frames drive the
exchange's response reader (http/response.py) through the callbacks its
parser would call. Flow control: request DATA waits for the backend's
windows (the exchange sees it as bytes pending, and stops reading its client
as it would for a slow HTTP/1.1 backend); response DATA is granted back as it
is taken, and not while the client is held back.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Callable

import httptools
import structlog

from ..http.codec import REASONS
from ..http.response import ResponseReader
from ..io.stream import Stream
from ..upstream.pool import Multiplexed, UpstreamConnection
from .fields import CONNECTION_SPECIFIC
from .frames import Code, ConnectionFailure
from .hpack_codec import Headers
from .upstream_codec import UpstreamCodec

if TYPE_CHECKING:
    from ..config.schema import Http2Settings

log = structlog.get_logger("l7lb.http2")

_KEPT = 128         # idle channels (and their readers) kept per session for reuse


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
        carrier = self.channel.session.stream
        return self.channel.unsent + (carrier.pending if carrier.queued else 0)

    def when_drained(self, callback: Callable[[], None]) -> None:
        if self.channel.unsent:
            self.channel.drained.append(callback)
        else:
            self.channel.session.stream.when_drained(callback)

    def stop_reading(self) -> None:
        self.reading = False          # response DATA is not granted back meanwhile

    def start_reading(self) -> None:
        if not self.reading:
            self.reading = True
            self.channel.granted()

    def close(self) -> None:
        self.closed = True


class Channel(UpstreamConnection):
    """One request's stream on a session, as the exchange sees a connection."""
    __slots__ = ("parser", "sid", "url", "fields", "head", "trailers", "queue",
                 "unsent", "ending", "drained", "withheld", "spent")

    def __init__(self, session: "Session") -> None:        # not the connection's __init__
        carrier = session.conn
        self.pool, self.slot, self.host, self.sock = carrier.pool, carrier.slot, carrier.host, \
            carrier.sock
        self.session: Session = session
        self.user = None
        self.reader: ResponseReader | None = None
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
        self.unsent = 0
        self.ending = False                   # END_STREAM is due after the queue
        self.drained: list[Callable[[], None]] = []
        self.withheld = 0                     # response bytes not yet granted back
        self.stream.reading = True
        self.stream.closed = False

    # -- the request, as httptools reads the exchange's bytes -------------------
    def take(self, data: bytes) -> None:
        """The exchange's bytes for the backend (ChannelStream.write)."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.spent = True          # sent without its Upgrade; the answer will not be a 101
        except httptools.HttpParserError:
            self.spent = True          # our own bytes: cannot happen, but never a crash
            self.session.ended(self, False)

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.trailers is not None:
            self.trailers.append((name.lower(), value))
        else:
            self.fields.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.head = self.session.request_block(self.parser.get_method(), self.url, self.fields)
        self.trailers = []

    def on_body(self, body: bytes) -> None:
        self._open(False)
        self.session.send(self, body, False)

    def on_message_complete(self) -> None:
        self.spent = not self.parser.should_keep_alive()
        if self._open(True):
            return
        trailers = [(n, v) for n, v in self.trailers or () if n not in CONNECTION_SPECIFIC]
        if trailers:
            self.session.send_trailers(self, trailers)
        else:
            self.session.send(self, b"", True)

    def _open(self, end: bool) -> bool:
        """HEADERS, once; True if they ended the stream."""
        head, self.head = self.head, None
        if head is None:
            return False
        self.session.open_stream(self, head, end)
        return end

    # -- flow control ---------------------------------------------------------
    def granted(self) -> None:
        withheld, self.withheld = self.withheld, 0
        if withheld and self.sid:
            self.session.consumed(self.sid, withheld)

    def took(self, size: int) -> None:
        """``size`` response bytes are in the reader; granted back unless held back."""
        if self.stream.reading:
            self.session.consumed(self.sid, size)
        else:
            self.withheld += size


class Session:
    """One multiplexed connection to a backend (pool.Multiplexed)."""
    __slots__ = ("conn", "stream", "codec", "scheme", "channels", "by_sid", "free", "started",
                 "closing", "flushing", "idle_since", "max_requests", "clock", "news")

    def __init__(self, conn: UpstreamConnection, settings: "Http2Settings", header_bytes: int,
                 clock: Callable[[], float]) -> None:
        self.conn, self.stream = conn, conn.stream
        self.codec = UpstreamCodec(self, stream_window=settings.initial_window_size,
                                   connection_window=settings.connection_window_size,
                                   header_bytes=header_bytes)
        self.scheme = b"https" if conn.stream.tls is not None else b"http"
        self.channels: set[Channel] = set()
        self.by_sid: dict[int, Channel] = {}
        self.free: list[Channel] = []
        self.started = 0                       # streams opened on it
        self.closing = False                   # GOAWAY either way: no new stream
        self.flushing = False
        self.news: list[Channel] = []          # channels whose readers got frames in this read
        self.clock = clock
        self.idle_since = clock()
        self.max_requests = conn.pool.max_requests or 1 << 62
        conn.user = self
        tls = conn.stream.tls
        if tls is not None and tls.selected_alpn_protocol() != "h2":
            self.closing = True       # the backend did not agree to h2: no stream goes to it
            conn.pool.loop.call_soon(self.on_upstream_closed, ConnectionRefusedError(
                errno.ECONNREFUSED, "backend did not choose h2 by ALPN"))
            return
        self._flush()

    # -- pool.Multiplexed --------------------------------------------------------
    @property
    def streams(self) -> int:
        return len(self.channels)

    def channel(self) -> UpstreamConnection | None:
        if (self.closing or self.stream.closed or self.started >= self.max_requests
                or len(self.channels) >= self.codec.peer_streams
                or self.channels and not self.codec.settled):
            return None          # (one stream until the backend's SETTINGS say how many)
        channel = self.free.pop() if self.free else Channel(self)
        self.channels.add(channel)
        self.started += 1
        return channel

    def ended(self, channel: UpstreamConnection, reuse: bool) -> None:
        assert isinstance(channel, Channel)
        if channel not in self.channels:
            return                  # ended already (its connection failed first)
        self.channels.remove(channel)
        sid, channel.sid = channel.sid, 0
        if sid:
            del self.by_sid[sid]
            if not reuse or sid in self.codec.streams:
                self.codec.reset(sid, Code.CANCEL)
                self._flush()
        channel.user = None
        if reuse and len(self.free) < _KEPT:
            channel.reset()
            self.free.append(channel)
        if not self.channels:
            self.idle_since = self.clock()
            if self.closing or self.started >= self.max_requests:
                self._close(False)

    def close(self) -> None:
        """GOAWAY: the streams under way finish; then the connection closes."""
        if not self.closing and not self.stream.closed:
            self.closing = True
            self.codec.goaway()
            self._flush()
        if not self.channels:
            self._close(False)

    # -- requests out ------------------------------------------------------------
    def request_block(self, method: bytes, url: bytes, fields: Headers) -> Headers:
        """An HTTP/1.1 request head as an HTTP/2 header block (RFC 9113 8.3.1).
        ``te: trailers`` says we take trailers (we pass them on), and a gRPC
        server refuses a call without it."""
        authority = b""
        block: Headers = [(b":method", method), (b":scheme", self.scheme), (b":authority", b""),
                          (b":path", url), (b"te", b"trailers")]
        for name, value in fields:
            if name == b"host":
                authority = value
            elif name not in CONNECTION_SPECIFIC and name != b"te":
                block.append((name, value))
        block[2] = (b":authority", authority)
        return block

    def open_stream(self, channel: Channel, block: Headers, end: bool) -> None:
        channel.sid = sid = self.codec.request(block, end)
        self.by_sid[sid] = channel
        self._flush()

    def send(self, channel: Channel, data: bytes, end: bool) -> None:
        if channel.queue or channel.ending:
            channel.queue.append(data)
            channel.unsent += len(data)
            channel.ending = channel.ending or end
        else:
            self._send_now(channel, data, end)
        self._flush()

    def _send_now(self, channel: Channel, data: bytes, end: bool) -> None:
        codec, sid = self.codec, channel.sid
        while True:
            window = codec.window(sid)
            if len(data) <= window:
                codec.send_data(sid, data, end)
                return
            if window <= 0:
                channel.queue.append(data)
                channel.unsent += len(data)
                channel.ending = end
                return
            codec.send_data(sid, data[:window], False)
            data = data[window:]

    def send_trailers(self, channel: Channel, trailers: Headers) -> None:
        if channel.queue:
            self.send(channel, b"", True)     # (trailers after queued data: sent bare)
            return
        self.codec.send_trailers(channel.sid, trailers)
        self._flush()

    def consumed(self, sid: int, size: int) -> None:
        self.codec.consumed(sid, size)
        self._flush()

    def _flush(self) -> None:
        if not self.flushing:
            self.flushing = True
            self.conn.pool.loop.call_soon(self._write)

    def _write(self) -> None:
        self.flushing = False
        if self.codec.out:
            self.stream.write(self.codec.take())

    # -- responses in (upstream_codec.Responses) ----------------------------------
    def on_upstream_data(self, data: bytes) -> None:
        try:
            self.codec.receive(data)
        except ConnectionFailure as failure:
            log.warning("backend broke HTTP/2", backend=self.conn.host.name, reason=str(failure))
            self.news.clear()
            self.on_upstream_closed(ConnectionResetError(errno.EPROTO, str(failure)))
            return
        news = self.news
        if news:
            # Each exchange hears once per read, however many frames it got
            # (a response's HEADERS and DATA usually come together).
            self.news = []
            for channel in news:
                user = channel.user
                if user is not None:
                    user.on_upstream_data(b"")    # the reader holds what came
        self._flush()

    def got_head(self, sid: int, block: Headers, ended: bool) -> None:
        channel = self.by_sid.get(sid)
        reader = channel.reader if channel is not None else None
        if channel is None or reader is None:
            return
        status = int(block[0][1])
        length = False
        for name, value in block[1:]:
            if name[:1] != b":":
                reader.on_header(name, value)
                length = length or name == b"content-length"
        if not length:
            # No length: the frames end it; read as chunked, so an HTTP/1.1
            # client gets it chunked too (with trailers, if any).
            reader.on_header(b"transfer-encoding", b"chunked")
        reader.on_status(REASONS.get(status, b""))      # HTTP/2 has none: the standard one
        reader.head_complete(status, True)
        if ended:
            reader.on_message_complete()
        self._tell(channel)

    def got_body(self, sid: int, data: bytes, size: int, ended: bool) -> None:
        channel = self.by_sid.get(sid)
        if channel is None or channel.reader is None:
            self.codec.consumed(sid, size)
            return
        if data:
            channel.reader.on_body(data)
        if ended:
            channel.reader.on_message_complete()
        else:
            channel.took(size)
        self._tell(channel)

    def got_trailers(self, sid: int, block: Headers) -> None:
        channel = self.by_sid.get(sid)
        if channel is None or channel.reader is None:
            return
        for name, value in block:
            channel.reader.on_header(name, value)
        channel.reader.on_message_complete()
        self._tell(channel)

    def _tell(self, channel: Channel) -> None:
        if channel not in self.news:
            self.news.append(channel)

    def got_reset(self, sid: int, code: int) -> None:
        channel = self.by_sid.get(sid)
        if channel is not None and channel.user is not None:
            # REFUSED_STREAM: not processed, so as safe to send again as a
            # request on a connection the backend had closed.
            exc = None if code == Code.REFUSED_STREAM else ConnectionResetError(
                errno.ECONNRESET, f"backend reset the stream (HTTP/2 error code {code})")
            channel.user.on_upstream_closed(exc)

    def got_window(self, sid: int) -> None:
        for channel in [self.by_sid[sid]] if sid in self.by_sid else list(self.by_sid.values()):
            if channel.queue:
                self._drain(channel)

    def _drain(self, channel: Channel) -> None:
        queue, ending = channel.queue, channel.ending
        channel.queue, channel.unsent, channel.ending = [], 0, False
        for at, data in enumerate(queue):
            self._send_now(channel, data, ending and at == len(queue) - 1)
            if channel.queue:
                channel.queue += queue[at + 1:]
                channel.unsent += sum(len(piece) for piece in queue[at + 1:])
                channel.ending = ending
                return
        waiters, channel.drained = channel.drained, []
        for waiter in waiters:
            waiter()

    def got_goaway(self, last: int) -> None:
        self.closing = True
        for sid, channel in list(self.by_sid.items()):
            if sid > last and channel.user is not None:
                channel.user.on_upstream_closed(None)    # not processed: may go again

    def got_settings(self) -> None:
        self.conn.pool.streams_free(self, self.conn)

    def on_upstream_closed(self, exc: OSError | None) -> None:
        """The connection ended: every stream on it fails."""
        self.closing = True
        for channel in list(self.channels):
            if channel.user is not None:
                channel.user.on_upstream_closed(exc)
        self._close(True)

    def _close(self, by_peer: bool) -> None:
        if self.codec.out and not self.stream.closed:
            self.stream.write(self.codec.take())
        self.conn.user = None
        self.conn.pool.session_closed(self, self.conn, by_peer)


def multiplexer(settings: "Http2Settings", header_bytes: int,
                clock: Callable[[], float]) -> Callable[[UpstreamConnection], Multiplexed]:
    """What a pool of HTTP/2 connections makes of each new one."""
    return lambda conn: Session(conn, settings, header_bytes, clock)
