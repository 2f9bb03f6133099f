"""Routes: which backend group, or which answer, a request gets by its host,
path, method, headers and query (docs/routing.md). Compiled once per
configuration; no I/O. May import dataplane.config only."""
