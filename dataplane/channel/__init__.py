"""Control process <-> worker messages: the lock-free shared-memory SPSC ring
(ring.py), the message types (messages.py) and the per-worker Link of two
rings with eventfd doorbells.

May import dataplane.upstream (for the typed Outcome) and nothing above it.
"""
