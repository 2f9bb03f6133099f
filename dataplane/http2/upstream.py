"""HTTP/2 to a backend (``protocol: h2`` over TLS with ALPN, ``h2c`` in
cleartext): one pooled connection carries many requests, each on a stream
of its own (docs/http2.md).

The pool (upstream/pool.py) keeps a ``Session`` per connection and asks it
for a ``Channel`` per request (channel.py): room for one more stream within
the backend's SETTINGS_MAX_CONCURRENT_STREAMS, else the pool opens another
connection or queues the request. A Channel stands where an HTTP/1.1
connection stands, so the fast lane and the general path carry requests to
HTTP/2 backends as they do to HTTP/1.1 ones: HTTP/1.1 bytes in, turned into
HEADERS, DATA and trailers; response frames out as HTTP/1.1 bytes, handed
over once per read of the connection.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Callable

import structlog

from ..upstream.connection import Multiplexed, UpstreamConnection
from .channel import Channel
from .fields import CONNECTION_SPECIFIC
from .frames import Code, ConnectionFailure
from .hpack_codec import Headers
from .upstream_codec import UpstreamCodec

if TYPE_CHECKING:
    from ..config.schema import Http2Settings

log = structlog.get_logger("l7lb.http2")

_KEPT = 128         # idle channels (and their readers) kept per session for reuse


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
        self.news: list[Channel] = []          # channels with response bytes from this read
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
                data = channel.taken()
                user = channel.user
                if user is not None:
                    user.on_upstream_data(data)
        self._flush()

    def got_head(self, sid: int, block: Headers, ended: bool) -> None:
        channel = self.by_sid.get(sid)
        if channel is not None:
            channel.response_head(block, ended)
            self._tell(channel)

    def got_body(self, sid: int, data: bytes, size: int, ended: bool) -> None:
        channel = self.by_sid.get(sid)
        if channel is None:
            self.codec.consumed(sid, size)
            return
        channel.response_body(data, ended)
        if not ended:
            channel.took(size)
        self._tell(channel)

    def got_trailers(self, sid: int, block: Headers) -> None:
        channel = self.by_sid.get(sid)
        if channel is not None:
            channel.response_trailers(block)
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
        channel.queue, channel.ending = [], False
        for at, data in enumerate(queue):
            self._send_now(channel, data, ending and at == len(queue) - 1)
            if channel.queue:
                channel.queue += queue[at + 1:]
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
