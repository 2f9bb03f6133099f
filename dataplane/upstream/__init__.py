"""The upstream side: backend groups and their hosts.

A Cluster (one per backend group in each worker; Envoy's cluster, HAProxy's
backend section) owns its hosts, the choice among them (choice.py over the
tables of hashing.py, keys from keys.py), each host's connection pool and
admission queue (pool.py), and is the one place that answers "may this host
take a request now". Exchanges ask it for a host and report a typed Outcome
(outcome.py) back; nothing else changes per-host counters. resolver.py keeps
host names resolved.

May import dataplane.config, dataplane.io and dataplane.kernel.
"""
