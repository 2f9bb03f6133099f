"""Circuit breakers: is a backend serving well enough to keep sending it
traffic? Sans-IO cores that take ``now`` and call results: the window of
recent calls (window.py), one backend's breaker (machine.py), and what
counts as a failure and how much may be ejected (policy.py).

Imports only dataplane.config: its callers translate outcomes into call
results (an outcome's failure class, its status, its duration).
"""
