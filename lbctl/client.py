"""Talking to a running balancer's admin socket: one JSON line out, one back."""

from __future__ import annotations

import json
import socket
from typing import Any

EXIT_REFUSED = 1        # the balancer answered with an error
EXIT_UNREACHABLE = 3    # no balancer to talk to


class CommandFailed(Exception):
    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def call(path: str, cmd: str, args: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
    """The command's result; CommandFailed with the exit code lbctl should use."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(path)
        except FileNotFoundError:
            raise CommandFailed(EXIT_UNREACHABLE, f"no balancer: {path} does not exist") from None
        except PermissionError:
            raise CommandFailed(EXIT_UNREACHABLE, f"permission denied on {path}") from None
        except ConnectionRefusedError:
            raise CommandFailed(EXIT_UNREACHABLE,
                                f"connection refused on {path} (stale socket?)") from None
        sock.sendall(json.dumps({"cmd": cmd, "args": args or {}}).encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise CommandFailed(EXIT_UNREACHABLE, f"{path}: the balancer closed the connection")
            reply += chunk
    except (TimeoutError, socket.timeout):
        raise CommandFailed(EXIT_UNREACHABLE, f"{path}: no answer within {timeout}s") from None
    finally:
        sock.close()
    answer = json.loads(reply)
    if not answer.get("ok"):
        error = answer.get("error", {})
        raise CommandFailed(EXIT_REFUSED, f"{error.get('code')}: {error.get('message')}")
    return answer["result"]
