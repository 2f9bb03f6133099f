"""Helpers that are not on the request path: the small HTTP test backend used
by the namespace tests and ``lbctl demo``. Imports nothing from dataplane.
"""
