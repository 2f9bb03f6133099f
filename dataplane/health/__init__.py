"""Health: is a backend alive? Sans-IO cores that take ``now``: the
phi-accrual detector (phi.py) and the local pause guard (pause.py).

May import dataplane.config and dataplane.upstream.outcome; no I/O, no clock.
"""
