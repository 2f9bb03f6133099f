"""h11 as the oracle for HTTP fuzzing: what a message means to a strict parser,
and a backend that parses what the balancer forwards with it and keeps what
it understood, in order.

The backend runs as threads of the test process on a socket made in a host's
namespace; every request it reads (or fails to read) is appended to ``seen``.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

import h11

# Headers a proxy removes or rewrites by design (RFC 9110 section 7.6.1, and
# the X-Forwarded-* and request ID it writes itself), left out when two
# readings are compared.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer",
              "transfer-encoding", "upgrade", "content-length", "x-forwarded-for",
              "x-forwarded-proto", "expect", "x-request-id"}
MAX_BUFFER = 1 << 20


@dataclass
class Reading:
    """One request as h11 reads it."""
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    version: str = "1.1"

    def end_to_end(self) -> tuple:
        return self.method, self.target, end_to_end(self.headers), self.body



def _reading(event: h11.Request) -> Reading:
    return Reading(event.method.decode("latin-1"), event.target.decode("latin-1"),
                   [(n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers],
                   version=event.http_version.decode())


def _keeps_alive(reading: Reading) -> bool:
    """HTTP/1.0 with Connection: keep-alive (h11 closes after any 1.0 request;
    RFC 9112 appendix C.2.2 lets a server keep such a connection)."""
    tokens = {t.strip() for n, v in reading.headers if n == "connection"
              for t in v.lower().split(",")}
    return reading.version == "1.0" and "keep-alive" in tokens and "close" not in tokens


def read_requests(data: bytes) -> tuple[list[Reading], bool]:
    """The requests h11 reads in ``data``, and whether it read all of it
    without an error (False: h11 refused something, or the last is incomplete)."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    readings: list[Reading] = []
    try:
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Request):
                readings.append(_reading(event))
            elif isinstance(event, h11.Data):
                readings[-1].body += event.data
            elif isinstance(event, h11.EndOfMessage):
                if conn.our_state is h11.SEND_RESPONSE:
                    conn.send(h11.Response(status_code=404, headers=[("content-length", "0")]))  # no switch after CONNECT
                    conn.send(h11.EndOfMessage())
                if conn.states[h11.CLIENT] is h11.MUST_CLOSE:
                    if not _keeps_alive(readings[-1]):
                        return readings, not conn.trailing_data[0]
                    rest, conn = conn.trailing_data[0], h11.Connection(h11.SERVER)
                    conn.receive_data(rest)
                    continue
                conn.start_next_cycle()
            elif event is h11.NEED_DATA:
                return readings, not conn.trailing_data[0]
            elif event is h11.PAUSED:
                return readings, True
    except h11.RemoteProtocolError:
        return readings, False


class _Server:
    """Threads serving a listening socket, a connection each."""

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.lock = threading.Lock()

    def start(self):
        self.listener.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        raise NotImplementedError


class OracleBackend(_Server):
    """An HTTP/1.1 server that reads with h11, keeps what it read in order and
    answers each request with an empty 200 marked ``x-oracle: seen``."""

    def __init__(self, listener: socket.socket) -> None:
        super().__init__(listener)
        self.seen: list = []        # Reading, or ("refused", what h11 said)

    def _serve(self, sock: socket.socket) -> None:  # noqa: C901 - one event loop
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_BUFFER)
        raw = b""
        current: Reading | None = None
        with sock:
            try:
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        data = sock.recv(65536)
                        raw = (raw + data)[-4096:]
                        conn.receive_data(data)
                    elif isinstance(event, h11.Request):
                        current = _reading(event)
                    elif isinstance(event, h11.Data) and current is not None:
                        current.body += event.data
                    elif isinstance(event, h11.EndOfMessage) and current is not None:
                        if not self._answer(sock, conn, current):
                            return
                        current = None
                    elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                        return
            except h11.RemoteProtocolError as exc:
                if "peer closed connection" in str(exc):
                    return          # a request the balancer gave up mid-body (it answered 4xx)
                with self.lock:
                    self.seen.append(("refused", f"{exc}: {raw[-300:]!r}"))
            except OSError:
                return

    def _answer(self, sock: socket.socket, conn: h11.Connection, reading: Reading) -> bool:
        """Answer with the reading; whether the connection goes on."""
        with self.lock:
            self.seen.append(reading)
        out = conn.send(h11.Response(status_code=200, headers=[("x-oracle", "seen"),
                                                               ("content-length", "0")]))
        out += conn.send(h11.EndOfMessage())
        sock.sendall(out)
        if conn.our_state is h11.MUST_CLOSE:
            return False
        conn.start_next_cycle()
        return True

    def taken(self) -> list:
        with self.lock:
            taken, self.seen[:] = list(self.seen), []
        return taken


@dataclass
class Answer:
    """One response the client read: the backend's, or the balancer's own."""
    status: int
    from_backend: bool
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def read_answers(sock: socket.socket, methods: list[str]) -> tuple[list[Answer], str]:
    """The responses to requests made with ``methods``, in order, and how the
    reading ended: "closed", "cut" (in a response), "complete", "timeout" or
    "garbled: ..."."""
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_BUFFER)
    answers: list[Answer] = []
    for method in methods:
        conn.send(h11.Request(method=method, target="/", headers=[("host", "x")]))
        conn.send(h11.EndOfMessage())
        status, oracle, headers, body = 0, False, [], b""
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                if "peer closed connection" in str(exc):
                    return answers, "cut"         # closed in the middle of a response
                return answers, f"garbled: {exc}"
            if event is h11.NEED_DATA:
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    return answers, "timeout"
                except ConnectionResetError:
                    return answers, "closed"
                if not data and not status:
                    return answers, "closed"      # closed before answering this one
                conn.receive_data(data)
            elif isinstance(event, h11.Response):
                status, oracle = event.status_code, (b"x-oracle", b"seen") in event.headers
                headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers]
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                answers.append(Answer(status, oracle, headers, body))
                break
            elif isinstance(event, h11.ConnectionClosed):
                return answers, "closed"
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            return answers, "closed"
        conn.start_next_cycle()
    return answers, "complete"


SENTINEL_ANSWER = (b"HTTP/1.1 200 OK\r\nX-Sentinel: 1\r\nContent-Length: 8\r\n"
                   b"Connection: close\r\n\r\nsentinel")


class CannedBackend(_Server):
    """Answers GET /sentinel properly and any other request with ``response``,
    as it is; one request per connection, closed after the answer."""

    def __init__(self, listener: socket.socket) -> None:
        super().__init__(listener)
        self.response = b""

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(5)
        with sock:
            try:
                head = read_head(sock)
                if not head:
                    return
                sock.sendall(SENTINEL_ANSWER if head.startswith(b"GET /sentinel")
                             else self.response)
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(65536):
                    pass
            except OSError:
                return


def read_head(sock: socket.socket) -> bytes:
    """Bytes up to and with the first empty line (fewer if the peer closes first)."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(65536)
        if not chunk:
            break
        head += chunk
    return head


def read_response(data: bytes) -> tuple[Answer | None, bool]:
    """The final response h11 reads in what a backend sent to a GET (then
    closed), and whether it read that without an error."""
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_BUFFER)
    conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    conn.receive_data(b"")
    answer = None
    try:
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Response):
                answer = Answer(event.status_code, True, [
                    (n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers])
            elif isinstance(event, h11.Data) and answer is not None:
                answer.body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return answer, True
            elif event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
                return None, False
    except h11.RemoteProtocolError:
        return None, False


def end_to_end(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    named = {token.strip() for name, value in headers if name == "connection"
             for token in value.lower().split(",")}
    return [(n, v) for n, v in headers
            if n not in HOP_BY_HOP and n not in named and not n.startswith("proxy-")]
