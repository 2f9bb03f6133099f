"""HTTP/1.1 proxying: rules.py (framing, header rewriting, error answers;
no I/O), client.py (one accepted client connection: parsing, pipelining,
deadlines) and exchange.py (one request carried to a host of a cluster and
its response back, a state machine), with response.py reading the backend's
response.

May import dataplane.upstream, dataplane.io, dataplane.config and
dataplane.logs; never the worker or the control process (the worker is
reached through the small interface in exchange.py's ``Site``).
"""
