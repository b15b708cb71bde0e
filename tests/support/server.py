"""The app served by a real threaded WSGI server on a free port, for races and real webhooks;
optionally with the worker running beside it, as in a deployment."""
from __future__ import annotations

import socket
import threading

from werkzeug.serving import make_server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    def __init__(self, app, worker: bool = False, port: int = 0) -> None:
        self.server = make_server("127.0.0.1", port, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.stop_worker = threading.Event()
        self.worker = None
        if worker:
            from service.worker import start_in_thread

            self.worker = start_in_thread(app, self.stop_worker)

    def stop(self) -> None:
        self.stop_worker.set()
        if self.worker is not None:
            self.worker.join(timeout=30)
        self.server.shutdown()
        self.server.server_close()
