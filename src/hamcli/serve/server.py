"""Running the app: the socket bound first (so a bad address fails before anything is announced), and each
connection given a deadline to deliver its request whole (uvicorn has none: 300 half-sent requests would
stay open for ever)."""

from __future__ import annotations

import socket
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from hamcli.errors import UsageError

READ_TIMEOUT = 15.0


class DeadlineProtocol(H11Protocol):
    """h11 with a read deadline: a request must arrive whole (headers and body) within `read_timeout` seconds
    of its first byte, or of the connection, or the connection is closed."""

    read_timeout = READ_TIMEOUT

    def connection_made(self, transport: Any) -> None:  # noqa: D102
        super().connection_made(transport)
        self._deadline = self.loop.call_later(self.read_timeout, self._expire)

    def data_received(self, data: bytes) -> None:  # noqa: D102
        if getattr(self, "_deadline", None) is None:
            self._deadline = self.loop.call_later(self.read_timeout, self._expire)
        super().data_received(data)
        if self.conn.their_state is h11.DONE and self._deadline is not None:  # the whole request is here
            self._deadline.cancel()
            self._deadline = None

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: D102
        if getattr(self, "_deadline", None) is not None:
            self._deadline.cancel()
            self._deadline = None
        super().connection_lost(exc)

    def _expire(self) -> None:
        self._deadline = None
        if self.conn.their_state is not h11.DONE and not self.transport.is_closing():
            self.transport.close()


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or a UsageError that says why not."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise UsageError(f"--host {host}: not an address this machine can listen on ({exc}); use 127.0.0.1, "
                         "localhost or 0.0.0.0") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port, or "
                         "--host 127.0.0.1") from None
    sock.setblocking(False)
    return sock


def serve(app: Any, sock: socket.socket, read_timeout: float = READ_TIMEOUT) -> None:
    """Serve `app` on the bound socket until Ctrl-C."""
    import uvicorn

    protocol = type("Deadline", (DeadlineProtocol,), {"read_timeout": read_timeout})
    config = uvicorn.Config(app, http=protocol, log_level="warning", timeout_keep_alive=5)
    uvicorn.Server(config).run(sockets=[sock])
