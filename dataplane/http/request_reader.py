"""The general path's request parsing for one client connection: llhttp
(httptools) fed the client's bytes, the head collected within
``limits.header_bytes`` and ``limits.headers``, then bodies and trailers
handed to the request they belong to. Bad input raises Reject from the
callbacks (httptools then raises HttpParserError, with the Reject as its
context). No I/O: the connection feeds it and is told what was read.
"""

from __future__ import annotations

from typing import Protocol

import httptools

from ..config import LimitSettings
from . import codec
from .codec import Reject
from .request import RequestHead


class Body(Protocol):
    """Where a request's body and its end go (its Exchange)."""
    def request_body(self, body: bytes) -> None: ...


class Requests(Protocol):
    """What the reader tells its connection."""
    def request_begun(self) -> None: ...
    def head_read(self, head: RequestHead, upgrade: bool) -> Body: ...
    def request_read(self, body: Body, trailers: codec.Headers) -> None: ...


def rejection(exc: httptools.HttpParserError) -> Reject:
    """The answer to input the parser refused: the Reject a callback raised,
    500 when a callback failed otherwise (a bug, for the caller to log), 400
    for bytes llhttp itself refused."""
    cause = exc.__context__
    if isinstance(cause, Reject):
        return cause
    if cause is not None:
        return Reject(500, "internal error")
    return Reject(400, f"malformed request: {exc}")


class RequestReader:
    __slots__ = ("requests", "limits", "parser", "head", "body", "in_trailers", "trailers")

    def __init__(self, requests: Requests, limits: LimitSettings) -> None:
        self.requests = requests
        self.limits = limits
        self.parser = httptools.HttpRequestParser(self)
        self.head: RequestHead | None = None   # the head being read
        self.body: Body | None = None          # the request whose body is being read
        self.in_trailers = False               # its head is done: fields are trailers
        self.trailers: codec.Headers = []

    @property
    def inside(self) -> bool:
        """A request has begun and is not read whole yet."""
        return self.head is not None or self.body is not None

    def feed(self, data: bytes) -> None:
        """Raises httptools.HttpParserUpgrade at an upgrade (its argument:
        where the new protocol's bytes start) and HttpParserError on bad input."""
        self.parser.feed_data(data)

    def drop(self) -> None:
        """The request being read is refused: forget it (no more is fed)."""
        self.head = self.body = None

    def restart(self) -> None:
        """The body went around the parser (spliced in the kernel): a fresh
        parser for what follows it."""
        self.parser = httptools.HttpRequestParser(self)
        self.body = None

    # -- httptools callbacks -------------------------------------------------
    def on_message_begin(self) -> None:
        self.head = RequestHead()
        self.in_trailers = False
        self.trailers = []
        self.requests.request_begun()

    def on_url(self, url: bytes) -> None:
        head = self.head
        assert head is not None
        head.target += url
        head.size += len(url)
        if head.size > self.limits.header_bytes:
            raise Reject(431 if len(head.target) < head.size else 414, "request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.in_trailers:
            self.trailers.append((name, value))
            return
        head, limits = self.head, self.limits
        assert head is not None
        head.size += len(name) + len(value) + 4
        head.headers.append((name, value))
        if head.size > limits.header_bytes:
            raise Reject(431, f"request head larger than {limits.header_bytes} bytes")
        if len(head.headers) > limits.headers:
            raise Reject(431, f"more than {limits.headers} header fields")

    def on_headers_complete(self) -> None:
        head, parser = self.head, self.parser
        assert head is not None
        self.head = None
        self.in_trailers = True
        head.method = parser.get_method()
        head.version = parser.get_http_version()
        head.keep_alive = parser.should_keep_alive()
        self.body = self.requests.head_read(head, parser.should_upgrade())

    def on_body(self, body: bytes) -> None:
        assert self.body is not None
        self.body.request_body(body)

    def on_message_complete(self) -> None:
        body, self.body = self.body, None
        assert body is not None
        self.requests.request_read(body, self.trailers)
