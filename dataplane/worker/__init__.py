"""A worker process: one uvloop event loop, its SO_REUSEPORT listener, the
clusters it routes to, its connections and timers; it applies state
snapshots from the control process and reports outcomes and counters up.

May import everything below it (http, tcp, channel, upstream, kernel, io,
config, logs); never dataplane.control.
"""
