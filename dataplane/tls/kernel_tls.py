"""Kernel TLS on the listener (``balancer.tls.ktls``, docs/tls.md).

OpenSSL's own kTLS needs a socket BIO, and uvloop runs TLS over memory
buffers; OpenSSL 3.0 also cannot offload TLS 1.3 receive. So the handshake is
ours: Python's SSLObject over memory buffers, fed one record at a time read
from the socket, so that nothing after the client's Finished leaves the
kernel. Then the session's keys (kernel_keys.py, from the key log) go to the
socket as TLS_TX and TLS_RX, and the connection goes on as if it were
cleartext: uvloop reads and writes plaintext, and bodies are spliced.

What the kernel does not do is refused: TLS 1.2 renegotiation is off on the
contexts; a TLS 1.3 KeyUpdate or any other record but application data makes
the kernel fail the read (EIO), which closes the connection. A kernel
without the ``tls`` ULP sends the connection to user-space TLS (the usual
uvloop transport), counted by reason.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from typing import Any, Callable, Coroutine, NamedTuple

import structlog

from ..io.stream import SOL_TLS, Stream
from .kernel_keys import (CIPHERS, CLIENT_HELLO, HANDSHAKE, RECORD_HEADER, TLS_1_2, TLS_1_3,
                          Cipher, Direction, crypto_info, hello_random, records,
                          tls12_directions, tls13_direction)
from .keylog import KeyLog

log = structlog.get_logger("l7lb.tls")

TCP_ULP, TLS_TX, TLS_RX = 31, 1, 2
_MAX_RECORD = 16384 + 2048                     # TLSCiphertext's largest fragment
KERNEL = "kernel"                              # the count of connections the kernel took


def missing() -> str | None:
    """Why this kernel cannot take TLS sessions, or None if it can. The ULP
    is looked up (and its module loaded) before it checks the socket's
    state, so an unconnected socket tells: ENOTCONN means it is there."""
    probe = socket.socket()
    try:
        probe.setsockopt(socket.IPPROTO_TCP, TCP_ULP, b"tls")
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            return None
        return f"the kernel has no tls ULP ({errno.errorcode.get(exc.errno or 0, exc.errno)})"
    finally:
        probe.close()
    return None


def aead_only(context: ssl.SSLContext) -> None:
    """Offer for TLS 1.2 only the ciphers the kernel can take over (TLS 1.3's
    are all such), when the configured list has any."""
    names = [c["name"] for c in context.get_ciphers()
             if c["protocol"] == "TLSv1.2" and c["name"] in CIPHERS]
    if names:
        context.set_ciphers(":".join(names))


class KernelRefused(Exception):
    """The handshake completed but the kernel cannot take the session."""


class Keys(NamedTuple):
    """A session as the kernel takes it: both directions from the server's side."""
    version: int
    cipher: Cipher
    rx: Direction
    tx: Direction


async def handshake(loop: asyncio.AbstractEventLoop, sock: socket.socket,
                    context: ssl.SSLContext, keylog: KeyLog) -> tuple[ssl.SSLObject, Keys]:
    """Complete a server handshake on ``sock``, reading it a record at a
    time. Raises ssl.SSLError (its alert sent), OSError, or KernelRefused
    (also for a handshake OpenSSL accepts without a ClientHello we read)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_side=True)
    hello = ClientHello(keylog)
    try:
        server_hello, last = b"", b""
        while True:
            record = await _record(loop, sock)
            hello.read(record)         # its secrets are kept from before OpenSSL sees it
            incoming.write(record)
            try:
                tls.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            except ssl.SSLError:
                await loop.sock_sendall(sock, outgoing.read())     # OpenSSL's alert
                raise
            last = outgoing.read()
            server_hello = server_hello or last
            if last:
                await loop.sock_sendall(sock, last)
            if done:
                break
        return tls, session_keys(tls, hello.secrets, hello.random, server_hello, records(last))
    finally:
        hello.done()


class ClientHello:
    """The client random, from the first 38 bytes of the handshake messages
    (a ClientHello may come in several records); once known, the key log
    keeps that handshake's secrets."""

    def __init__(self, keylog: KeyLog) -> None:
        self.keylog, self.head, self.random = keylog, b"", b""
        self.secrets: dict[str, bytes] = {}

    def read(self, record: bytes) -> None:
        if self.random or record[0] != HANDSHAKE:
            return
        self.head += record[RECORD_HEADER:]
        if len(self.head) >= 38 and self.head[0] == CLIENT_HELLO:    # type, length, version, random
            self.random = self.head[6:38]
            self.secrets = self.keylog.want(self.random)

    def done(self) -> None:
        if self.random:
            self.keylog.drop(self.random)


def session_keys(tls: ssl.SSLObject, secrets: dict[str, bytes], client_random: bytes,
                 server_hello: bytes, sent: int) -> Keys:
    """TLS 1.3: the server has sent ``sent`` records under its traffic key
    (the session tickets), the client none. TLS 1.2: each side has sent its
    Finished under the new keys."""
    if not client_random:
        raise KernelRefused("no client random")
    name = (tls.cipher() or ("?",))[0]
    cipher = CIPHERS.get(name)
    if cipher is None:
        raise KernelRefused(f"cipher {name} is not one the kernel takes")
    if tls.version() == "TLSv1.3":
        client, server = secrets.get("CLIENT_TRAFFIC_SECRET_0"), secrets.get("SERVER_TRAFFIC_SECRET_0")
        if client is None or server is None:
            raise KernelRefused("no TLS 1.3 traffic secrets logged")
        return Keys(TLS_1_3, cipher, tls13_direction(client, cipher, 0),
                    tls13_direction(server, cipher, sent))
    server_random = hello_random(server_hello)
    if server_random is None or "CLIENT_RANDOM" not in secrets:
        raise KernelRefused("no TLS 1.2 master secret")
    rx, tx = tls12_directions(secrets["CLIENT_RANDOM"], server_random, client_random, cipher, 1)
    return Keys(TLS_1_2, cipher, rx, tx)


def install(sock: socket.socket, keys: Keys) -> None:
    """The kernel encrypts and decrypts on ``sock`` from now on."""
    try:
        sock.setsockopt(SOL_TLS, TLS_TX, crypto_info(keys.version, keys.cipher, keys.tx))
        sock.setsockopt(SOL_TLS, TLS_RX, crypto_info(keys.version, keys.cipher, keys.rx))
    except OSError as exc:
        raise KernelRefused(f"the kernel refused the session's keys ({exc.strerror})") from None


async def _record(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes:
    header = await _exactly(loop, sock, 5)
    length = int.from_bytes(header[3:5], "big")
    if length > _MAX_RECORD:
        raise ssl.SSLError("TLS record too long")
    return header + await _exactly(loop, sock, length)


async def _exactly(loop: asyncio.AbstractEventLoop, sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await loop.sock_recv(sock, size - len(data))
        if not chunk:
            raise ConnectionResetError(errno.ECONNRESET, "closed during the TLS handshake")
        data += chunk
    return data


class KernelTls:
    """Accepted sockets of a TLS listener: the handshake here and the session
    to the kernel, or, where the kernel cannot, uvloop's user-space TLS.
    ``counts`` has the connections the kernel took and each reason why not."""

    def __init__(self, loop: asyncio.AbstractEventLoop, front: Callable[[], ssl.SSLContext],
                 accepted: Callable[[Stream], None], timeout: float) -> None:
        self.loop, self.front, self.accepted, self.timeout = loop, front, accepted, timeout
        self.keylog = KeyLog()
        self.counts: dict[str, int] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.missing = missing()
        if self.missing is not None:
            log.warning("kernel TLS unavailable; user-space TLS", reason=self.missing)

    def user_space(self, accepted: Callable[[Stream], None]) -> Callable[[Stream], None]:
        """Where the kernel has no TLS: uvloop's handshakes, counted under the reason."""
        reason = self.missing or "kernel TLS unavailable"

        def counted(stream: Stream) -> None:
            self._count(reason)
            accepted(stream)
        return counted

    def prepare(self, context: ssl.SSLContext) -> None:
        """Every context a handshake can be in gets the key log and AEADs only
        (where the kernel can take the sessions)."""
        if self.missing is None:
            aead_only(context)
            self.keylog.install(context)

    def accept(self, sock: socket.socket) -> None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, TCP_ULP, b"tls")
        except OSError as exc:
            if exc.errno == errno.ENOTCONN:          # the client has gone already
                sock.close()
                return
            self._count(f"no tls ULP on the socket ({exc.strerror})")
            self._spawn(self._user_space(sock))
            return
        self._spawn(self._kernel(sock))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _kernel(self, sock: socket.socket) -> None:
        try:
            tls, keys = await asyncio.wait_for(
                handshake(self.loop, sock, self.front(), self.keylog), self.timeout)
            install(sock, keys)
        except KernelRefused as exc:
            self._count(str(exc))
            log.warning("kernel TLS refused; connection closed", reason=str(exc))
            sock.close()
            return
        except (OSError, ssl.SSLError, asyncio.TimeoutError):
            sock.close()              # as uvloop does with a failed handshake: nothing logged
            return
        self._count(KERNEL)
        await self.loop.connect_accepted_socket(
            lambda: Stream(made=lambda stream: self._made(stream, tls)), sock)

    def _made(self, stream: Stream, tls: ssl.SSLObject) -> None:
        stream.tls, stream.kernel_tls = tls, True
        self.accepted(stream)

    async def _user_space(self, sock: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(
                lambda: Stream(made=self.accepted), sock, ssl=self.front(),
                ssl_handshake_timeout=self.timeout)
        except (OSError, ssl.SSLError, asyncio.TimeoutError):
            sock.close()

    def _count(self, reason: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
