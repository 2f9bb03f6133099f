"""The control process: supervisor.py (fork, reap, restart with backoff,
signals), state.py (configuration plus admin changes -> versioned
snapshots; the one interface every producer of backend state feeds),
process.py (wires them together and handles worker reports), the admin
socket (admin.py) and its commands (commands.py), the counters gathered from
workers (counters.py) and the congestion-control choice (congestion.py).

It never proxies. May import everything below it, including dataplane.worker
(to run a forked worker).
"""
