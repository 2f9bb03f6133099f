"""The client side of our HTTP/2 codec (dataplane/http2/upstream_codec.py)
against the h2 package as the backend, in memory: what one sends, the
other must read the same."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from hypothesis import given, settings, strategies as st

from dataplane.http2.frames import Code, ConnectionFailure
from dataplane.http2.upstream_codec import UpstreamCodec

REQUEST = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"a.test"),
           (b":path", b"/svc/Call"), (b"content-type", b"application/grpc"), (b"te", b"trailers")]


class Seen:
    """Our handler: everything the codec reported, in order."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def __getattr__(self, name: str):
        if not name.startswith("got_"):
            raise AttributeError(name)
        return lambda *args: self.events.append((name[4:], *args))

    def of(self, kind: str) -> list[tuple]:
        return [e[1:] for e in self.events if e[0] == kind]


class Pair:
    """Our codec and an h2 server, their bytes moved by hand."""

    def __init__(self, server_settings: dict[int, int] | None = None) -> None:
        self.seen = Seen()
        self.codec = UpstreamCodec(self.seen, stream_window=65535, connection_window=1 << 20,
                                   header_bytes=16384)
        self.server = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding=None))
        self.server.initiate_connection()
        if server_settings:
            self.server.update_settings(server_settings)
        self.server_events: list = []
        self.move()

    def move(self) -> None:
        """Until neither side has anything to send."""
        while True:
            ours, theirs = self.codec.take(), self.server.data_to_send()
            if not ours and not theirs:
                return
            if ours:
                self.server_events += self.server.receive_data(ours)
            if theirs:
                self.codec.receive(theirs)

    def server_got(self, kind: type) -> list:
        return [e for e in self.server_events if isinstance(e, kind)]


def test_the_handshake_completes_and_the_backends_stream_limit_is_kept():
    pair = Pair({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 7})
    assert pair.seen.of("settings") == [()]
    assert pair.codec.settled and pair.codec.peer_streams == 7
    assert pair.server_got(h2.events.RemoteSettingsChanged)


def test_a_request_and_its_response_with_trailers_cross_intact():
    pair = Pair()
    sid = pair.codec.request(REQUEST, end=False)
    pair.codec.send_data(sid, b"\x00\x00\x00\x00\x02hi", end=True)
    pair.move()
    [request] = pair.server_got(h2.events.RequestReceived)
    assert request.headers == REQUEST and request.stream_id == sid == 1
    assert b"".join(e.data for e in pair.server_got(h2.events.DataReceived)) == \
        b"\x00\x00\x00\x00\x02hi"
    assert pair.server_got(h2.events.StreamEnded)
    pair.server.send_headers(sid, [(b":status", b"103"), (b"link", b"</a>")])
    pair.server.send_headers(sid, [(b":status", b"200"), (b"content-type", b"application/grpc")])
    pair.server.send_data(sid, b"answer")
    pair.server.send_headers(sid, [(b"grpc-status", b"0")], end_stream=True)
    pair.move()
    assert pair.seen.of("head") == [(sid, [(b":status", b"200"),
                                           (b"content-type", b"application/grpc")], False)]
    assert pair.seen.of("body") == [(sid, b"answer", 6, False)]
    assert pair.seen.of("trailers") == [(sid, [(b"grpc-status", b"0")])]
    assert sid not in pair.codec.streams          # both sides ended: forgotten


def test_request_data_waits_for_the_backends_window():
    pair = Pair({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 100})
    sid = pair.codec.request(REQUEST, end=False)
    assert pair.codec.window(sid) == 100
    pair.codec.send_data(sid, b"x" * 100, end=False)
    assert pair.codec.window(sid) == 0
    pair.move()
    [data] = pair.server_got(h2.events.DataReceived)
    pair.server.acknowledge_received_data(100, sid)
    pair.server.increment_flow_control_window(1000, sid)
    pair.move()
    assert (sid,) in pair.seen.of("window") and pair.codec.window(sid) > 0


def test_response_data_is_granted_back_as_it_is_consumed():
    pair = Pair()
    sid = pair.codec.request(REQUEST[:4], end=True)
    pair.move()
    pair.server.send_headers(sid, [(b":status", b"200")])
    window = pair.server.local_flow_control_window(sid)
    pair.server.send_data(sid, b"y" * 16384)
    pair.move()
    assert pair.server.local_flow_control_window(sid) == window - 16384
    pair.codec.consumed(sid, 16384)
    pair.codec.consumed(sid, 16384)      # past half the stream's window: granted
    pair.move()
    assert pair.server.local_flow_control_window(sid) > window - 16384


def test_a_reset_and_a_goaway_reach_the_handler():
    pair = Pair()
    first = pair.codec.request(REQUEST[:4], end=True)
    second = pair.codec.request(REQUEST[:4], end=True)
    pair.move()
    pair.server.reset_stream(first, error_code=Code.REFUSED_STREAM)
    pair.server.close_connection(last_stream_id=first)
    pair.move()
    assert pair.seen.of("reset") == [(first, Code.REFUSED_STREAM)]
    assert pair.seen.of("goaway") == [(first,)] and second > first


def test_a_response_without_status_resets_its_stream_only():
    pair = Pair()
    sid = pair.codec.request(REQUEST[:4], end=True)
    pair.move()
    pair.server.send_headers(sid, [(b":status", b"200")], end_stream=True)   # a good one first
    bad = pair.codec.request(REQUEST[:4], end=True)
    pair.move()
    block = pair.server.encoder.encode([(b"x-no-status", b"1")])
    pair.codec.receive(b"".join([len(block).to_bytes(3, "big"), b"\x01\x05",
                                 bad.to_bytes(4, "big"), block]))
    assert pair.seen.of("reset") == [(bad, Code.PROTOCOL_ERROR)]
    assert pair.seen.of("head")[0][0] == sid


def test_a_first_frame_other_than_settings_ends_the_connection():
    codec = UpstreamCodec(Seen(), stream_window=65535, connection_window=65535,
                          header_bytes=16384)
    with pytest.raises(ConnectionFailure):
        codec.receive(b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + b"12345678")   # a PING


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.tuples(st.sampled_from([b"x-a", b"x-b", b"server", b"etag"]),
                                   st.binary(min_size=0, max_size=40).filter(
                                       lambda v: b"\r" not in v and b"\n" not in v
                                       and b"\x00" not in v and v.strip() == v)),
                         max_size=6), min_size=1, max_size=8),
       st.integers(min_value=0, max_value=70000))
def test_response_heads_decode_as_h2_encoded_them_with_its_dynamic_table(heads, size):
    pair = Pair()
    for fields in heads:
        sid = pair.codec.request(REQUEST[:4], end=True)
        pair.move()
        pair.server.send_headers(sid, [(b":status", b"200"), *fields])
        body = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
        sent = 0
        while sent < len(body):
            room = min(pair.server.local_flow_control_window(sid),
                       pair.server.max_outbound_frame_size, len(body) - sent)
            pair.server.send_data(sid, body[sent:sent + room])
            sent += room
            pair.move()
            pair.codec.consumed(sid, room)
            pair.move()
        pair.server.end_stream(sid)
        pair.move()
        head = [e for e in pair.seen.of("head") if e[0] == sid]
        assert head == [(sid, [(b":status", b"200"), *fields], False)]
        got = b"".join(e[1] for e in pair.seen.of("body") if e[0] == sid)
        assert got == body


@pytest.mark.parametrize("field", [(b"connection", b"close"), (b"transfer-encoding", b"chunked"),
                                   (b"x-split", b"a\r\nx-injected: 1"), (b"Upper", b"1")])
def test_a_response_field_that_could_break_http11_framing_resets_its_stream(field):
    pair = Pair()
    pair.server.config.validate_outbound_headers = False
    pair.server.config.normalize_outbound_headers = False
    sid = pair.codec.request(REQUEST[:4], end=True)
    pair.move()
    pair.server.send_headers(sid, [(b":status", b"200"), field], end_stream=True)
    pair.move()
    assert pair.seen.of("reset") == [(sid, Code.PROTOCOL_ERROR)] and not pair.seen.of("head")


def test_a_response_head_becomes_http11_framed_as_its_fields_say():
    from dataplane.http2.channel import _head
    block = [(b":status", b"200"), (b"content-type", b"text/plain")]
    assert _head(block, False)[2:] == (
        True, b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n")
    assert _head([*block, (b"content-length", b"3")], False)[2] is False
    assert _head(block, True)[2] is False                       # HEAD: no body
    assert _head([(b":status", b"204")], False)[2:] == (False, b"HTTP/1.1 204 No Content\r\n\r\n")
