"""What a client connection's single deadline currently guards (the worker's
timer sweep checks it; see ClientConnection.check)."""

IDLE, HEAD, CONNECT, RESPONSE, STREAM, LINGER, QUEUE = range(7)
