"""A Flask app of the local stack served over TLS on 127.0.0.1 (a free port) by werkzeug in a
thread, without werkzeug's access log: the authorization server (``devstack.oauth``) and the
Graph-shaped server (``devstack.graph``)."""

from __future__ import annotations

import threading
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from devstack.tls import HOST, TlsFiles, server_context


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr (werkzeug's default)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class ThreadedWsgi:
    """One app's HTTPS server and its thread; ``name`` names the thread."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self, app: Any, tls: TlsFiles) -> int:
        """Serve ``app``; the port it listens on."""
        if self._server is not None:
            raise RuntimeError(f"{self.name} already started")
        server = make_server(
            HOST, 0, app, threaded=True, request_handler=_QuietHandler, ssl_context=server_context(tls)
        )
        thread = threading.Thread(target=server.serve_forever, name=self.name, daemon=True)
        thread.start()
        self._server, self._thread = server, thread
        return int(server.server_port)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
