"""HTTP/1.1 proxying.

- ``client.py``: one accepted client connection: its parser, its one
  deadline, pipelining, closing.
- ``lane_request.py``: the fast lane's side of a connection, the one
  request it carries at a time.
- ``lane.py``: the fast lane's checks (no I/O): a read that is one simple
  request, a read that is one simple response.
- ``exchange.py``: one request on the general path, carried to a host of a
  cluster and its response back (a state machine), with ``attempt.py``
  (its host and connection, try after try), ``request.py`` (the parsed
  head and its checks), ``request_body.py`` (the body on its way
  upstream), ``response.py`` (responses read and re-framed), ``retry.py``
  (when an attempt may be tried again), ``routed.py`` (what a route asks
  of a request) and ``upgrade.py`` (101).
- ``request_log.py``: what a finished request leaves in its worker (counts,
  the access line; the lane writes the same out, a call less).
- ``codec.py``: the HTTP/1.1 codec (framing, heads, error answers; no I/O);
  ``identity.py``: who the client is and what the backend is told of it;
  ``timer.py``: the connection's one deadline and what happens when it
  passes; ``deadline.py``: what it guards (no I/O).

May import dataplane.upstream, dataplane.routing, dataplane.io,
dataplane.config, dataplane.logs and dataplane.worker_view; never the worker or
the control process (the worker is reached through ``worker_view.WorkerView``).
"""
