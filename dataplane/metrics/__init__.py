"""Prometheus metrics (docs/metrics.md): families.py turns the control
process's figures into metric families with prometheus-client (no I/O);
endpoint.py serves them, with /healthz and /ready, on ``metrics.listen``.

May import nothing of ours but dataplane.config.
"""
