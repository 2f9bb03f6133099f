"""A grpcio client for the end-to-end tests, run in the client's namespace:
``python grpc_calls.py TARGET SHAPE [ARG] [--count N] [--timeout S] [--tls CA]``
makes its calls on one channel (one connection) and prints one JSON line
per call: ``{"ok": true, "answers": [...]}`` or ``{"ok": false, "code": NAME}``.

Shapes: ``unary ARG`` (N calls, one after another), ``server N``, ``client
N SIZE`` (N requests of SIZE bytes, pseudo-random), ``bidi N``.
"""

from __future__ import annotations

import argparse
import json
import random

import grpc

SERVICE = "/l7lb.test.Echo/"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("target")
    parser.add_argument("shape", choices=["unary", "server", "client", "bidi"])
    parser.add_argument("args", nargs="*")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--tls", help="the CA that signed the balancer's certificate")
    parser.add_argument("--authority", help="the name the certificate is for")
    options = parser.parse_args()
    if options.tls:
        with open(options.tls, "rb") as ca:
            credentials = grpc.ssl_channel_credentials(ca.read())
        extra = [("grpc.ssl_target_name_override", options.authority)] if options.authority else []
        channel = grpc.secure_channel(options.target, credentials, options=extra)
    else:
        channel = grpc.insecure_channel(options.target)
    for _ in range(options.count):
        print(json.dumps(call(channel, options)), flush=True)
    channel.close()


def call(channel: grpc.Channel, options: argparse.Namespace) -> dict:
    shape, args, timeout = options.shape, options.args, options.timeout
    try:
        if shape == "unary":
            answers = [channel.unary_unary(SERVICE + "Unary")(args[0].encode(), timeout=timeout)]
        elif shape == "server":
            answers = list(channel.unary_stream(SERVICE + "Server")(args[0].encode(),
                                                                       timeout=timeout))
        elif shape == "client":
            count, size = int(args[0]), int(args[1])
            rng = random.Random(7)
            parts = [rng.randbytes(size) for _ in range(count)]
            answers = [channel.stream_unary(SERVICE + "Client")(iter(parts), timeout=timeout)]
        else:
            parts = [b"m%d" % i for i in range(int(args[0]))]
            answers = list(channel.stream_stream(SERVICE + "Bidi")(iter(parts), timeout=timeout))
    except grpc.RpcError as error:
        return {"ok": False, "code": error.code().name, "details": error.details()}
    return {"ok": True, "answers": [answer.decode() for answer in answers]}


if __name__ == "__main__":
    main()
