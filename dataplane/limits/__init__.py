"""Limits per client address: shared counts in bounded memory (counts.py, no
I/O) and the policy a worker applies with them (per_client.py)."""
