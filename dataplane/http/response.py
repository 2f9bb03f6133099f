"""Backend responses read and re-framed for the client, without I/O.

One reader per upstream connection, kept for its whole life (its llhttp
parser with it): ``begin`` readies it for the next response. It is
httptools' callback object: fed the backend's bytes, it collects what the
client must receive (relayed 1xx heads, the rewritten response head, the
body re-chunked or not, the last chunk with trailers) in ``out``, and knows
when the response is complete. Framing decisions are codec.py's; the
exchange does the I/O.
"""

from __future__ import annotations

import httptools

from ..routing.route import HeaderEdits
from . import codec
from .codec import CHUNKED, CLOSE, LENGTH, NONE


class ResponseReader:
    __slots__ = ("parser", "feed", "head_request", "version", "keep_alive", "upgrade", "closing",
                 "reuse_forbidden", "status", "reason", "headers", "trailers", "framing",
                 "client_framing", "remaining", "started", "complete", "interim",
                 "upstream_keep_alive", "client_keep_alive", "out", "body_bytes", "edits",
                 "in_step", "lines", "added")

    def __init__(self) -> None:
        self._new_parser()
        self.begin(b"GET", "1.1", True, None, False, None)

    def _new_parser(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        # Raises httptools.HttpParserUpgrade at a 101 (its argument: where the
        # new protocol's bytes start) and HttpParserError on a broken response.
        self.feed = self.parser.feed_data
        self.in_step = True       # the parser is between two messages

    def begin(self, method: bytes, version: str, keep_alive: bool, upgrade: bytes | None,
              reuse_forbidden: bool, edits: HeaderEdits | None, added: tuple[bytes, ...] = ()) -> None:
        """Ready for the response to a request: ``version``: the client's
        HTTP version ("2.0": the head and trailers are kept, not written, and
        the body is passed on unframed); ``keep_alive``: the client
        asked to keep its connection; ``reuse_forbidden``: the upstream
        connection must not be reused whatever the backend says (it may have
        read bytes of a refused upgrade); ``edits``: a route's response header
        changes; ``added``: a header to add, as codec.Fields keeps its line (the
        request's ID, echoed).
        ``closing`` (whether the client connection is closing) is
        kept up to date by the exchange."""
        if not self.in_step:
            # The last response ended where llhttp could not see it (a HEAD
            # response's announced body, or one spliced in the kernel).
            self._new_parser()
        self.in_step = False
        self.head_request = method == b"HEAD"
        self.version = version
        self.keep_alive = keep_alive
        self.upgrade = upgrade
        self.closing = False
        self.reuse_forbidden = reuse_forbidden
        self.added = added
        self.status = 0
        self.reason = b""
        self.headers: codec.Headers = []
        self.lines: list[bytes] = []      # an h2 client's header lines (codec.Fields.lines)
        self.trailers: codec.Headers = []
        self.framing = self.client_framing = NONE
        self.remaining = 0            # body bytes still to come (LENGTH framing)
        self.started = False          # the response head is in ``out`` (or sent)
        self.complete = False
        self.interim = False          # inside a 1xx response
        self.upstream_keep_alive = False   # read at the head: httptools forgets it after
        self.client_keep_alive = False
        self.out: list[bytes] = []    # bytes for the client, taken by the exchange
        self.body_bytes = 0
        self.edits = edits

    def close(self) -> None:
        """Its connection is closed: the parser refers back to us, so break the
        cycle rather than leave it to the garbage collector."""
        del self.parser, self.feed

    def take(self) -> bytes:
        out = self.out
        data = b"".join(out) if len(out) > 1 else out[0] if out else b""
        out.clear()
        return data

    def switch_head(self) -> bytes:
        """The 101 head for the client once the backend switched protocols."""
        return codec.response_head(101, self.reason, codec.scan(self.headers), NONE, None,
                                   upgrade=self.upgrade)

    def end_at_eof(self) -> bool:
        """The backend closed: True when that ends a close-delimited body."""
        if self.started and not self.complete and self.framing == CLOSE:
            self._end()
            return True
        return False

    def spliced(self, moved: int) -> None:
        """The rest of the body went by splice."""
        self.body_bytes += moved
        self.complete = True

    def may_splice(self, minimum: int) -> bool:
        return (self.framing == LENGTH and self.client_framing == LENGTH
                and self.remaining >= minimum)

    # -- httptools callbacks ---------------------------------------------
    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_message_begin(self) -> None:
        if self.complete:
            # Bytes after the whole response: never forwarded, and the connection
            # is out of step with its requests, so it is not reused.
            self.upstream_keep_alive = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.complete:
            return
        (self.trailers if self.started else self.headers).append((name, value))

    def on_headers_complete(self) -> None:
        if self.complete:
            return
        status = self.parser.get_status_code()
        self.reason = codec.reason_phrase(self.reason, status)
        if status < 200 and status != 101:
            if self.version == "1.1":
                self.out.append(codec.interim_head(status, self.reason, self.headers))
            self.headers = []
            self.reason = b""
            self.interim = True
            return
        self.status = status
        self.upstream_keep_alive = self.parser.should_keep_alive() and not self.reuse_forbidden
        if status == 101:
            return    # the parser stops at the protocol switch
        fields = codec.scan(self.headers)
        if fields.coding is not None and not codec.chunked_once_and_last(fields.coding):
            raise ValueError(f"Transfer-Encoding {fields.coding!r}")     # a 502
        if self.edits is not None:
            fields.lines = self.edits.apply(fields.lines)
        if self.added:
            fields.lines += self.added
        framing = codec.response_framing(fields, status, self.head_request)
        client_framing = codec.client_framing(framing, self.version)
        if self.version == "2.0":       # the client's h2 stream frames it (h2/stream.py)
            self.lines = fields.lines
            self.framing, self.remaining, self.client_framing = framing, fields.length, client_framing
            self._head_read()
            return
        keep_alive = (self.keep_alive and client_framing != CLOSE and self.upgrade is None
                      and not self.closing)
        if keep_alive:
            connection = b"keep-alive" if self.version == "1.0" else None
        else:
            connection = b"close"
        self.client_keep_alive = keep_alive
        self.framing, self.remaining = framing, fields.length
        self.client_framing = client_framing
        self.out.append(codec.response_head(status, self.reason, fields, client_framing,
                                            connection))
        self._head_read()

    def _head_read(self) -> None:
        self.started = True
        if self.head_request:
            self.complete = True    # httptools cannot know a HEAD response has no body

    def on_body(self, body: bytes) -> None:
        if self.complete:
            return
        self.body_bytes += len(body)
        if self.framing == LENGTH:
            self.remaining -= len(body)
        self.out.append(codec.chunk(body) if self.client_framing == CHUNKED else body)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        self.in_step = True
        if not self.complete and self.status != 101:
            self._end()

    def _end(self) -> None:
        self.complete = True
        if self.client_framing == CHUNKED:
            self.out.append(codec.last_chunk(self.trailers))
