"""A gRPC server (grpcio, h2c or h2 over TLS) for the end-to-end tests: one
service with the four streaming shapes, each answer naming the backend, and
the standard health service (grpcio-health-checking).

Methods of ``l7lb.test.Echo`` (messages are raw bytes, no protobuf):

- ``Unary``: answers ``NAME:`` + the request; ``fail:CODE`` ends with that
  status code instead, ``failon:NAME:CODE`` too but only on backend NAME, ``sleep:MS`` answers after MS ms with the deadline
  the call carried (``NAME:deadline=SECONDS`` or ``none``), ``health:STATUS``
  sets the health service's status (SERVING, NOT_SERVING) for "" and Echo;
- ``Server``: the request is a count N: N answers ``NAME:i``;
- ``Client``: many requests; one answer ``NAME:COUNT:BYTES:SHA256``;
- ``Bidi``: each request answered at once with ``NAME:`` + it.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

SERVICE = "l7lb.test.Echo"


def serve(name: str, address: str, tls: tuple[str, str] | None) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    checker = health.HealthServicer()
    checker.set("", health_pb2.HealthCheckResponse.SERVING)
    checker.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
    tag = name.encode() + b":"

    def unary(request: bytes, context: grpc.ServicerContext) -> bytes:
        if request.startswith(b"failon:" + name.encode() + b":"):
            context.abort(grpc.StatusCode[request.rsplit(b":", 1)[1].decode()], f"{name} failed it")
        if request.startswith(b"fail:"):
            context.abort(grpc.StatusCode[request[5:].decode()], f"{name} failed it")
        if request.startswith(b"sleep:"):
            remaining = context.time_remaining()
            time.sleep(int(request[6:]) / 1000)
            return tag + (b"deadline=%.3f" % remaining if remaining is not None else b"none")
        if request.startswith(b"health:"):
            status = health_pb2.HealthCheckResponse.ServingStatus.Value(request[7:].decode())
            checker.set("", status)
            checker.set(SERVICE, status)
        return tag + request

    def server_stream(request: bytes, context: grpc.ServicerContext):
        for i in range(int(request)):
            yield tag + str(i).encode()

    def client_stream(requests, context: grpc.ServicerContext) -> bytes:
        digest, count, size = hashlib.sha256(), 0, 0
        for request in requests:
            digest.update(request)
            count += 1
            size += len(request)
        return tag + f"{count}:{size}:{digest.hexdigest()}".encode()

    def bidi(requests, context: grpc.ServicerContext):
        for request in requests:
            yield tag + request

    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Server": grpc.unary_stream_rpc_method_handler(server_stream),
        "Client": grpc.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    if tls is None:
        server.add_insecure_port(address)
    else:
        with open(tls[0], "rb") as cert, open(tls[1], "rb") as key:
            credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
        server.add_secure_port(address, credentials)
    server.start()
    print(f"{name} serving gRPC on {address}", flush=True)
    server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--tls", help="CERT:KEY")
    args = parser.parse_args()
    serve(args.name, args.address, tuple(args.tls.split(":")) if args.tls else None)


if __name__ == "__main__":
    main()
