"""How a request (HTTP) or connection (TCP) on a host failed, as a typed
kind: what a request tells its cluster when it ends, which counts it in the
host's tally and reads it as a passive health signal and a breaker's call.
"""

from __future__ import annotations

import enum
import errno


class ErrorKind(enum.Enum):
    """Why an exchange failed; NONE when the backend's answer reached the client."""
    NONE = "none"
    CONNECT_REFUSED = "connect_refused"        # RST to our SYN
    CONNECT_TIMEOUT = "connect_timeout"        # no answer within timeouts.connect
    CONNECT_ERROR = "connect_error"            # any other connect failure (unreachable...)
    RESET_BEFORE_RESPONSE = "reset_before_response"   # reset before any response byte
    CLOSED_BEFORE_RESPONSE = "closed_before_response"  # clean close before any response byte
    RESET_MID_RESPONSE = "reset_mid_response"  # reset or close inside the response body
    RESPONSE_TIMEOUT = "response_timeout"      # no response head within timeouts.request
    BACKEND_IDLE = "backend_idle"              # no byte mid-response within timeouts.backend_idle
    TOTAL_TIMEOUT = "total_timeout"            # timeouts.total ran out (retries included)
    CLIENT_TIMEOUT = "client_timeout"          # timeouts.client_body or client_write
    HOST_DOWN = "host_down"                    # declared down while the request waited
    BAD_RESPONSE = "bad_response"              # not valid HTTP/1.x, or a 101 not asked for
    QUEUE_TIMEOUT = "queue_timeout"            # no connection free within pool.queue_timeout
    POOL_FULL = "pool_full"                    # max_active and max_queue reached
    OVERLOADED = "overloaded"                  # breaker.max_connections/pending/requests
    NO_HOST = "no_host"                        # no host admitted a request
    CLIENT_ABORTED = "client_aborted"          # the client went away or broke the request
    RELAY_FAILED = "relay_failed"              # a kernel splice failed mid-body
    REFUSED_BY_STATUS = "refused_by_status"    # a gRPC status of retries.grpc_status, trailers-only

    @property
    def connect(self) -> bool:
        """Failed before the backend saw anything of the request."""
        return self in _CONNECT


_CONNECT = frozenset({ErrorKind.CONNECT_REFUSED, ErrorKind.CONNECT_TIMEOUT,
                      ErrorKind.CONNECT_ERROR})

# The backend's part in an outcome, as circuit breakers count it
# (breaker.failure_on): "" it answered (its status decides), a failure class,
# or None: not the backend's doing (the client, the pool, the balancer).
FAILURE_CLASS: dict[ErrorKind, str | None] = {
    ErrorKind.NONE: "",
    ErrorKind.CONNECT_REFUSED: "connect", ErrorKind.CONNECT_TIMEOUT: "connect",
    ErrorKind.CONNECT_ERROR: "connect",
    ErrorKind.RESET_BEFORE_RESPONSE: "reset", ErrorKind.CLOSED_BEFORE_RESPONSE: "reset",
    ErrorKind.RESET_MID_RESPONSE: "reset", ErrorKind.BAD_RESPONSE: "reset",
    ErrorKind.RESPONSE_TIMEOUT: "timeout", ErrorKind.BACKEND_IDLE: "timeout",
    ErrorKind.TOTAL_TIMEOUT: "timeout", ErrorKind.CLIENT_TIMEOUT: None,
    ErrorKind.HOST_DOWN: None, ErrorKind.QUEUE_TIMEOUT: None, ErrorKind.POOL_FULL: None,
    ErrorKind.OVERLOADED: None,
    ErrorKind.NO_HOST: None, ErrorKind.CLIENT_ABORTED: None, ErrorKind.RELAY_FAILED: None,
    ErrorKind.REFUSED_BY_STATUS: "",      # an answer: breaker.failure_on judges its status
}

# The outcomes passive health counts toward health.passive_errors: the
# backend failed before any response byte. A refused connect is not among
# them, as it marks the host down at once (passive.py); failures after the
# response began count for the breaker alone (FAILURE_CLASS).
PASSIVE_COUNTED = frozenset({ErrorKind.CONNECT_TIMEOUT, ErrorKind.CONNECT_ERROR,
                             ErrorKind.RESET_BEFORE_RESPONSE, ErrorKind.CLOSED_BEFORE_RESPONSE})


def connect_error(exc: OSError | None) -> ErrorKind:
    """The kind of a failed connect, from its errno."""
    if exc is not None and exc.errno == errno.ECONNREFUSED:
        return ErrorKind.CONNECT_REFUSED
    if exc is not None and exc.errno == errno.ETIMEDOUT:
        return ErrorKind.CONNECT_TIMEOUT
    return ErrorKind.CONNECT_ERROR
