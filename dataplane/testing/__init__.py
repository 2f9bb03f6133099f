"""Helpers that are not on the request path: the small HTTP test backend used
by the namespace tests and ``lbctl demo`` (backend.py and faults.py, which
import nothing from dataplane), and a worker on stand-in transports for
measuring and differential tests (inprocess.py).
"""
