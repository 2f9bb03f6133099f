"""A small HTTP/1.1 backend that reports what it received and who it is.

Used by ``lbctl demo`` and by the tests (beside Debian's nginx). Routes:

- ``/bytes/N``: N bytes of body; ``?framing=length|chunked|close``, ``&trailer=1``
- ``/status/N``: an empty response with that status
- ``/slow/MS``: answer after MS milliseconds
- ``/reset``: promise 1000 bytes, send 10, then reset the connection
- ``/drop``: read the request, print ``NAME dropped METHOD PATH BODY_BYTES``,
  reset the connection without answering
- ``/arm-reset``: answer, then drop the next request on this connection unanswered
- ``/reset-after``: answer, then reset the connection (it was idle on the client's side)
- ``/garbage``: answer with bytes that are not HTTP
- ``/extra``: answer, and in the same write a second, unsolicited response
- ``/ws``: WebSocket echo (RFC 6455 frames, text and binary)
- anything else: JSON with the backend's name, method, path, headers, body
  length and SHA-256, and trailers (chunked bodies are decoded).

With ``--delay MIN-MAX`` every HTTP answer comes MIN to MAX ms late. Faults
switched on at run time, and the request counts: faults.py (``/_...``).
With ``--tls CERT:KEY`` it speaks HTTPS. With ``--proxy`` every connection must begin with a PROXY header (v1 or v2,
read here by a parser of its own): HTTP answers report it as ``proxy``
(``ADDRESS:PORT``, or ``LOCAL``/``UNKNOWN`` for the balancer's own
connections), the TCP answer ends in ``from ORIGIN``.
With ``--tcp`` it is a raw TCP server instead: it reads until EOF, then answers
``NAME got N bytes SHA256`` and closes. A client whose first line is
``HALFCLOSE`` gets ``bye`` and EOF first, and the server prints what it then
receives; ``RESET`` makes the server reset the connection; ``SINK`` hashes
what follows as it arrives, for streams too long to hold.
"""

from __future__ import annotations

import argparse
import base64
import socketserver
import hashlib
import io
import json
import random
import socket
import ssl
import struct
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .faults import Faults

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
PATTERN = bytes(range(256)) * 256   # 64 KiB


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "l7lb-test-backend"
    disable_nagle_algorithm = True   # head and body go out as separate writes
    name = "backend"
    delay = (0.0, 0.0)     # seconds every answer is held back (uniform)
    faults = Faults()      # replaced by one per server (make_server)
    proxy = False          # connections begin with a PROXY header
    origin = ""            # what it said

    def handle(self) -> None:
        if self.proxy:
            try:
                self.origin = read_proxy(self.rfile)
            except (ValueError, IndexError, OSError):
                return                       # no valid header: hang up, as a real server does
        super().handle()

    def log_message(self, *args: object) -> None:
        pass

    # -- request bodies --------------------------------------------------
    def read_body(self) -> tuple[int, str, list[list[str]]]:
        digest, total, trailers = hashlib.sha256(), 0, []
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    break
                total += self._consume(size, digest)
                self.rfile.readline()
            while (line := self.rfile.readline().strip()):
                name, _, value = line.decode("latin-1").partition(":")
                trailers.append([name.strip(), value.strip()])
        else:
            total = self._consume(int(self.headers.get("Content-Length") or 0), digest)
        return total, digest.hexdigest(), trailers

    def _consume(self, size: int, digest: hashlib._Hash) -> int:
        left = size
        while left:
            data = self.rfile.read(min(left, 1 << 20))
            if not data:
                raise ConnectionError("body ended early")
            digest.update(data)
            left -= len(data)
        return size

    # -- responses -------------------------------------------------------
    def do_GET(self) -> None:
        self.route(send_body=True)

    def do_HEAD(self) -> None:
        self.route(send_body=False)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def route(self, send_body: bool) -> None:
        if self.path.startswith("/_"):
            self.read_body()
            return self.faults.control(self.path, self.answer)
        self.faults.enter(self.client_address[0])
        try:
            if not self.faults.inject(self):
                self.serve(send_body)
        finally:
            self.faults.leave()

    def answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Backend", self.name)
        self.end_headers()
        self.wfile.write(body)

    def serve(self, send_body: bool) -> None:
        if self.delay[1]:
            time.sleep(random.uniform(*self.delay))
        if getattr(self, "reset_next", False):     # armed by /arm-reset on this connection
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        parts = url.path.strip("/").split("/")
        if parts[0] == "ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            return self.websocket()
        size, sha, trailers = self.read_body()
        if parts[0] == "bytes":
            return self.send_bytes(int(parts[1]), query, send_body)
        if parts[0] == "status":
            self.send_response(int(parts[1]))
            if int(parts[1]) not in (204, 304):
                self.send_header("Content-Length", "0")
            return self.end_headers()
        if parts[0] == "slow":
            time.sleep(int(parts[1]) / 1000)
        if parts[0] == "reset":
            return self.reset()
        if parts[0] == "drop":               # read the request, reset, answer nothing
            print(f"{self.name} dropped {self.command} {self.path} {size}", flush=True)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        if parts[0] == "arm-reset":
            self.reset_next = True
        if parts[0] == "garbage":
            self.wfile.write(b"this is not http\r\n\r\n")
            self.close_connection = True
            return
        if parts[0] == "extra":
            answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            self.wfile.write(answer + answer.replace(b"ok", b"no"))
            return
        report = {"backend": self.name, "peer": "%s:%d" % self.client_address[:2],
                  "proxy": self.origin or None,
                  "method": self.command, "path": self.path,
                  "version": self.request_version, "headers": list(self.headers.items()),
                  "body_bytes": size, "body_sha256": sha, "trailers": trailers}
        body = json.dumps(report).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Backend", self.name)
        self.end_headers()
        if send_body:
            self.wfile.write(body)
        if parts[0] == "reset-after":
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.close_connection = True

    def send_bytes(self, size: int, query: dict[str, Any], send_body: bool) -> None:
        framing = query.get("framing", "length")
        self.send_response(200)
        self.send_header("X-Backend", self.name)
        if framing == "length":
            self.send_header("Content-Length", str(size))
        elif framing == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
            if query.get("trailer"):
                self.send_header("Trailer", "X-Checksum")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if not send_body:
            return
        left = size
        while left:
            piece = PATTERN[:min(left, len(PATTERN))]
            self.wfile.write(b"%x\r\n%b\r\n" % (len(piece), piece) if framing == "chunked" else piece)
            left -= len(piece)
        if framing == "chunked":
            trailer = b"X-Checksum: done\r\n" if query.get("trailer") else b""
            self.wfile.write(b"0\r\n" + trailer + b"\r\n")

    def reset(self) -> None:
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
        self.wfile.flush()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True

    def websocket(self) -> None:
        key = self.headers["Sec-WebSocket-Key"].encode()
        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        while (frame := read_frame(self.rfile)) is not None:
            opcode, payload = frame
            if opcode == 8:   # close
                self.wfile.write(encode_frame(8, payload))
                break
            self.wfile.write(encode_frame(opcode, payload))
            self.wfile.flush()
        self.close_connection = True


def read_frame(rfile: io.BufferedIOBase) -> tuple[int, bytes] | None:
    head = rfile.read(2)
    if len(head) < 2:
        return None
    opcode, length = head[0] & 0x0F, head[1] & 0x7F
    if length == 126:
        length = struct.unpack("!H", rfile.read(2))[0]
    elif length == 127:
        length = struct.unpack("!Q", rfile.read(8))[0]
    mask = rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
    data = rfile.read(length)
    return opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def encode_frame(opcode: int, payload: bytes, mask: bytes | None = None) -> bytes:
    """A final frame; ``mask`` (4 bytes) for frames a client sends."""
    length = len(payload)
    second = 0x80 if mask else 0
    if length < 126:
        head = bytes([0x80 | opcode, second | length])
    elif length < 65536:
        head = bytes([0x80 | opcode, second | 126]) + struct.pack("!H", length)
    else:
        head = bytes([0x80 | opcode, second | 127]) + struct.pack("!Q", length)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


class TcpHandler(socketserver.BaseRequestHandler):
    name = "backend"
    proxy = False

    def handle(self) -> None:
        sock = self.request
        if self.proxy:                       # the header, then everything to EOF
            rfile = sock.makefile("rb")
            try:
                origin = read_proxy(rfile)
            except (ValueError, IndexError):
                return                       # no valid header: hang up
            data = rfile.read()
            sock.sendall(f"{self.name} got {len(data)} bytes "
                         f"{hashlib.sha256(data).hexdigest()} from {origin}\n".encode())
            return
        first = sock.recv(65536)
        if first.startswith(b"RESET"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()    # before socketserver's own shutdown() could send a FIN
            return
        if first.startswith(b"HALFCLOSE"):
            sock.sendall(b"bye\n")
            sock.shutdown(socket.SHUT_WR)
            data = read_to_eof(sock)
            print(f"{self.name} after halfclose got {data!r}", flush=True)
            return
        if first.startswith(b"SINK"):
            count, digest = hash_to_eof(sock, first)
            sock.sendall(f"{self.name} got {count} bytes {digest}\n".encode())
            return
        data = first + read_to_eof(sock) if first else b""
        sock.sendall(f"{self.name} got {len(data)} bytes {hashlib.sha256(data).hexdigest()}\n"
                     .encode())


def read_proxy(rfile: io.BufferedIOBase) -> str:
    """The client a PROXY header (v1 or v2) names: ADDRESS:PORT, LOCAL or UNKNOWN."""
    start = rfile.read(5)
    if start == b"PROXY":
        words = (start + rfile.readline()).decode("ascii").split()
        return "UNKNOWN" if words[1] == "UNKNOWN" else f"{words[2]}:{words[4]}"
    head = start + rfile.read(11)
    if head[:12] != b"\r\n\r\n\x00\r\nQUIT\n":
        raise ValueError("no PROXY header")
    body = rfile.read(int.from_bytes(head[14:16], "big"))
    if head[12] & 0x0F == 0:
        return "LOCAL"
    if head[13] == 0x11:
        return f"{socket.inet_ntop(socket.AF_INET, body[:4])}:{int.from_bytes(body[8:10], 'big')}"
    return f"{socket.inet_ntop(socket.AF_INET6, body[:16])}:{int.from_bytes(body[32:34], 'big')}"


def hash_to_eof(sock: socket.socket, first: bytes) -> tuple[int, str]:
    digest, count = hashlib.sha256(first), len(first)
    buffer = bytearray(1 << 20)
    while (n := sock.recv_into(buffer)):
        digest.update(memoryview(buffer)[:n])
        count += n
    return count, digest.hexdigest()


def read_to_eof(sock: socket.socket) -> bytes:
    chunks = []
    while (data := sock.recv(1 << 20)):
        chunks.append(data)
    return b"".join(chunks)


def make_server(name: str, host: str, port: int, tcp: bool = False,
                delay: tuple[float, float] = (0.0, 0.0),
                proxy: bool = False) -> socketserver.TCPServer:
    handler = type("NamedHandler", (TcpHandler if tcp else Handler,),
                   {"name": name, "delay": delay, "faults": Faults(), "proxy": proxy})
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server_class = type("Server", (ThreadingHTTPServer,), {
        "address_family": family, "allow_reuse_address": True, "daemon_threads": True,
        # socketserver's default backlog of 5 drops SYNs under 50 clients: their
        # connects then wait out retransmits of 1 s, 3 s... (a flaky test found it)
        "request_queue_size": 128})
    server: socketserver.TCPServer = server_class((host, port), handler)
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="backend")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tcp", action="store_true", help="raw TCP instead of HTTP")
    parser.add_argument("--proxy", action="store_true",
                        help="every connection begins with a PROXY header (v1 or v2)")
    parser.add_argument("--delay", default="0-0", metavar="MIN-MAX",
                        help="answer every request MIN to MAX milliseconds late (uniform)")
    parser.add_argument("--tls", metavar="CERT:KEY", help="HTTPS with this certificate")
    args = parser.parse_args()
    low, _, high = args.delay.partition("-")
    server = make_server(args.name, args.host, args.port, args.tcp,
                         (float(low) / 1000, float(high or low) / 1000), args.proxy)
    if args.tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*args.tls.split(":"))
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"backend {args.name} listening on {args.host}:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
