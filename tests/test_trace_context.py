"""W3C trace context as read and written, and the worker's sampling, on
the recommendation's own examples and its invalid cases."""

from __future__ import annotations

import pytest

from dataplane.config import TracingSettings
from dataplane.tracing.context import Parent, header, parse
from dataplane.tracing.recorder import MAX_KEPT, Tracer

VALID = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_the_recommendations_example_is_read():
    assert parse(VALID) == Parent(b"4bf92f3577b34da6a3ce929d0e0e4736", b"00f067aa0ba902b7", True)
    assert parse(VALID[:-2] + b"00").sampled is False
    assert parse(VALID[:-2] + b"03").sampled is True          # other flag bits ignored
    assert parse(b"01" + VALID[2:] + b"-what-comes-later") is not None   # a later version


@pytest.mark.parametrize("value", [
    b"", b"00-xyz-01", VALID.upper(), VALID + b"-more",          # version 00 is exactly 55 bytes
    b"ff" + VALID[2:], b"00-" + b"0" * 32 + VALID[35:], VALID[:36] + b"0" * 16 + VALID[52:],
    VALID.replace(b"-", b"_"), b"01" + VALID[2:] + b"more",
])
def test_invalid_contexts_count_as_none(value):
    assert parse(value) is None


def test_our_header_names_our_span():
    assert header(b"a" * 32, b"b" * 16, False) == b"traceparent: 00-" + b"a" * 32 + b"-" + \
        b"b" * 16 + b"-00\r\n"


def test_sampling_follows_the_caller_and_the_ratio_for_new_traces():
    never, always = Tracer(TracingSettings(ratio=0.0)), Tracer(TracingSettings(ratio=1.0))
    assert never.begin(None) is None
    fresh = always.begin(None)
    assert fresh is not None and fresh.sampled and fresh.parent_id == b""
    caller = parse(VALID)
    continued = never.begin(caller)          # the caller decided: recorded whatever the ratio
    assert continued is not None and continued.trace_id == caller.trace_id
    assert continued.parent_id == caller.span_id and continued.client_id != caller.span_id
    assert continued.line.startswith(b"traceparent: 00-" + caller.trace_id + b"-"
                                     + continued.client_id)
    quiet = always.begin(parse(VALID[:-2] + b"00"))
    quiet.end("GET x", 0.0, False, {})
    continued.end("GET x", continued.started, False, {"k": 1})
    spans, dropped = never.take()
    assert len(spans) == 1 and dropped == 0 and spans[0].parent_id == caller.span_id.decode()
    assert spans[0].start_ns <= spans[0].sent_ns <= spans[0].end_ns
    assert always.take() == ([], 0)             # the unsampled one is not kept


def test_a_worker_keeps_a_bounded_number_of_spans_per_report():
    tracer = Tracer(TracingSettings(ratio=1.0))
    for _ in range(MAX_KEPT + 5):
        trace = tracer.begin(None)
        assert trace is not None
        trace.end("GET x", 0.0, False, {})
    spans, dropped = tracer.take()
    assert (len(spans), dropped) == (MAX_KEPT, 5)


def test_new_ids_differ_between_tracers():
    one, two = Tracer(TracingSettings(ratio=1.0)), Tracer(TracingSettings(ratio=1.0))
    first, second = one.begin(None), two.begin(None)
    assert first is not None and second is not None and first.trace_id != second.trace_id


@pytest.mark.parametrize("access, answer_in_two", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("request_head, lane", [
    (b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n", True),
    (b"GET /a HTTP/1.1\r\nHost: h\r\ntraceparent: " + VALID + b"\r\n\r\n", False),
])
def test_a_worker_traces_requests_on_both_paths(access, answer_in_two, request_head, lane):
    """In a real worker (stand-in sockets), access log on or off, the answer
    in one read or two (the lane hands the request over at the first): the
    request sent upstream carries our context, and its record names the
    answer and when the request went upstream."""
    from dataplane.testing.inprocess import Client, InProcess
    world = InProcess(access=access, extra="tracing: {enabled: true, ratio: 1.0}\n")
    try:
        conn, _ = world.idle_upstream()
        Client(world.worker).send(request_head)
        world.settle()
        conn, sent = world.written_upstream()
        assert conn is not None and sent.count(b"traceparent: 00-") == 1
        assert (VALID[3:35] in sent) is not lane      # continued, or a new trace on the lane
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        for piece in (answer[:-2], answer[-2:]) if answer_in_two else (answer,):
            conn.stream.data_received(piece)
            world.settle()
        [span], _ = world.worker.tracer.take()
        assert span.attributes["http.response.status_code"] == 200
        assert span.client_id in sent.decode() and span.sent_ns > 0
        assert span.parent_id == ("" if lane else VALID[36:52].decode())
    finally:
        world.close()


def test_tracing_without_the_sdk_stops_with_the_command_that_installs_it(monkeypatch):
    import sys
    from dataplane.control.traces import TraceExport, TracingUnavailable
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter",
                        None)                       # as if l7lb[tracing] were not installed
    with pytest.raises(TracingUnavailable, match=r"pip install 'l7lb\[tracing\]'"):
        TraceExport(TracingSettings(enabled=True))
