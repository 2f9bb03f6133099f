"""TCP mode: an accepted connection joined to a backend connection by a byte
relay, with half-close and resets passed through.

May import dataplane.upstream, dataplane.io, dataplane.config and
dataplane.logs.
"""
