"""Sockets on the event loop: the reactor (readiness callbacks), Stream (a
non-blocking socket with a bounded write buffer), the byte relays (splice and
copy) and listening sockets.

Knows nothing of HTTP, backends or configuration. Imports nothing from
dataplane.
"""
