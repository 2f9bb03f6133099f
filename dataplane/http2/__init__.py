"""HTTP/2 to clients: over TLS when ALPN chose h2, or cleartext (h2c) with
prior knowledge when ``balancer.http2.cleartext`` is on (docs/http2.md).

``server.py`` is the protocol without I/O (frames, stream states, flow
control; HPACK in ``hpack_codec.py``, field rules in ``fields.py``), checked
against the h2 package by tests/test_http2_server.py; ``connection.py`` is
the I/O around it and the defences a public listener needs (``guard.py``:
rapid reset and control-frame floods, sans-IO);
``request.py`` reads a stream's header block as the general path's
RequestHead; ``stream.py`` is one stream, which an http.Exchange carries to
a backend like any HTTP/1.1 request: the same routes, choice, health,
breakers, retries, limits, access line and metrics.

May import http/ and everything below it; the worker imports it.
"""
