"""The ceiling for the admission benchmark: Starlette + uvicorn over TLS doing nothing.

It reads the request body and answers a constant AdmissionReview, with the same server
settings as ``spacegate serve`` (one worker, same TLS files, HTTP/1.1, access log off).
Whatever spacegate adds on top of this (decoding, deciding, encoding, metrics, the
decision log line) is the difference the benchmark reports.

Run: ``python bench/bare_app.py --port 9443 --tls-cert tls.crt --tls-key tls.key``
"""

from __future__ import annotations

import argparse

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

CONSTANT_REPLY = orjson.dumps(
    {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": "00000000-0000-0000-0000-000000000000", "allowed": True},
    }
)


def create_bare_app(*, echo_uid: bool = False) -> Starlette:
    """An app answering every POST /validate and /mutate with :data:`CONSTANT_REPLY`.

    With ``echo_uid`` it decodes the review and echoes its ``request.uid``: the least a
    webhook must do for a real kube-apiserver to accept its reply (``bench/apiserver.py``).
    """

    async def answer(request: Request) -> Response:
        body = await request.body()
        if not echo_uid:
            return Response(CONSTANT_REPLY, media_type="application/json")
        uid = orjson.loads(body)["request"]["uid"]
        reply = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": uid, "allowed": True},
        }
        return Response(orjson.dumps(reply), media_type="application/json")

    return Starlette(
        routes=[
            Route("/validate", answer, methods=["POST"]),
            Route("/mutate", answer, methods=["POST"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9443)
    parser.add_argument("--tls-cert", required=True)
    parser.add_argument("--tls-key", required=True)
    parser.add_argument("--echo-uid", action="store_true", help="echo request.uid (real apiserver)")
    args = parser.parse_args()
    uvicorn.run(
        create_bare_app(echo_uid=args.echo_uid),
        host=args.host,
        port=args.port,
        ssl_certfile=args.tls_cert,
        ssl_keyfile=args.tls_key,
        access_log=False,
        server_header=False,
        log_level="warning",
        timeout_keep_alive=75,
    )


if __name__ == "__main__":
    main()
