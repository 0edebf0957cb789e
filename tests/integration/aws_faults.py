"""An HTTP proxy in front of moto server that answers chosen AWS requests with an AWS error.

``devstack.proxy.TcpProxy`` breaks connections; this one speaks HTTP, so a test can refuse one kind
of request a few times, as AWS does (DynamoDB throttling one write, S3 failing one part of an upload),
and let everything else through to moto unchanged. Point a service's endpoint at it
(``AWS_ENDPOINT_URL_DYNAMODB``, ``AWS_ENDPOINT_URL_S3``) and set ``AWS_MAX_ATTEMPTS=1``, so that
each call of an adapter is one request here.
"""

import http.client
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection", "upgrade"}


@dataclass(frozen=True)
class Request:
    """One request as the proxy got it, and the status it was answered with."""

    method: str
    path: str
    headers: Message
    body: bytes
    status: int = 0
    injected: bool = False  # answered by a fault, never forwarded

    @property
    def operation(self) -> str:
        """A DynamoDB operation (``X-Amz-Target``: ``PutItem``), else ``METHOD path``."""
        target = self.headers.get("X-Amz-Target", "")
        return target.rsplit(".", 1)[1] if target else f"{self.method} {self.path}"

    def json(self) -> Any:
        return json.loads(self.body or b"{}")


@dataclass
class _Fault:
    matches: Callable[[Request], bool]
    status: int
    body: bytes
    content_type: str
    times: int


class AwsFaultProxy:
    """Forwards every request to ``target_url``; one that a fault matches is answered with its error
    instead (``times`` times), and never reaches moto. :attr:`requests` lists them all, in order."""

    def __init__(self, target_url: str) -> None:
        target = urlsplit(target_url)
        self._target = (target.hostname or "127.0.0.1", target.port or 80)
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self.requests: list[Request] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def fail_dynamodb(self, matches: Callable[[Request], bool], code: str, *, times: int) -> None:
        """Answer matching DynamoDB requests with HTTP 400 and the error ``code``."""
        body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": "injected"})
        self._add(_Fault(matches, 400, body.encode(), "application/x-amz-json-1.0", times))

    def fail_s3(self, matches: Callable[[Request], bool], code: str, status: int, *, times: int) -> None:
        """Answer matching S3 requests with ``status`` and the error ``code``."""
        body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>injected</Message>"
        body += "</Error>"
        self._add(_Fault(matches, status, body.encode(), "application/xml", times))

    def refused(self) -> list[Request]:
        """The requests a fault answered."""
        return [request for request in self.requests if request.injected]

    def _add(self, fault: _Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def _fault_for(self, request: Request) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times > 0 and fault.matches(request):
                    fault.times -= 1
                    return fault
        return None

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def _forward(self, request: Request) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(*self._target, timeout=60)
        try:
            headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
            headers["Content-Length"] = str(len(request.body))
            connection.request(request.method, request.path, body=request.body, headers=headers)
            answer = connection.getresponse()
            return answer.status, answer.getheaders(), answer.read()
        finally:
            connection.close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                request = Request(self.command, self.path, self.headers, self._body())
                fault = proxy._fault_for(request)
                if fault is not None:
                    proxy._record(replace(request, status=fault.status, injected=True))
                    self._answer(fault.status, [("Content-Type", fault.content_type)], fault.body)
                    return
                status, headers, body = proxy._forward(request)
                proxy._record(replace(request, status=status))
                self._answer(status, headers, body)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle  # http.server's names

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0], 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response_only(status)
                length = str(len(body))
                for name, value in headers:
                    if name.lower() in HOP_BY_HOP:
                        continue
                    if name.lower() == "content-length":
                        length = value if self.command == "HEAD" else length
                        continue
                    self.send_header(name, value)
                if status not in (204, 304):
                    self.send_header("Content-Length", length)
                self.end_headers()
                if self.command != "HEAD" and status not in (204, 304):
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # http.server's name
                """Quiet: the test reads :attr:`AwsFaultProxy.requests`."""

        return Handler
