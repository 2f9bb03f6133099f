"""TLS on the listener (docs/tls.md): names.py picks a certificate for a
server name (sans-IO), certificates.py reads what a certificate says,
contexts.py builds the standard library's SSL contexts and switches between
them during each handshake. No TLS code of our own: OpenSSL does the protocol.

May import dataplane.config only.
"""
