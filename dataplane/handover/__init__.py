"""Handing a running balancer over to a new process: the listening sockets
(SCM_RIGHTS) and the run-time state a restart would lose, on the admin
socket's JSON lines (wire.py, carried.py). Used by an upgrade (control/
upgrade.py gives, control/takeover.py takes) and by workers orphaned by a
dead control process (worker/orphan.py gives).

May import dataplane.channel (the backend states) and nothing above it.
"""
