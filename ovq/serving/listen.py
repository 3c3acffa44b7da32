"""Where ``ovq serve`` listens: the host resolved, the REST socket listening and the gRPC port held, before any
model is compiled and before either server starts.

uvicorn and grpc each report a port in use their own way (uvicorn logs ``[Errno 98]`` and exits 3 from inside the
event loop; grpc raises ``RuntimeError: Failed to bind to address`` with no reason, after the REST server is up).
Here the REST socket is bound by ovq, listens at once and is handed to uvicorn, and the gRPC port is bound by ovq
and held, listening, until grpc binds it (:meth:`Listeners.release_grpc`), so a port in use, a host that does not
resolve or an address this machine does not have is one :class:`ListenError` naming ``HOST:PORT``, and nothing has
started.

Both ports listen, not just bound: a bound socket that does not listen keeps out only programs that bind without
``SO_REUSEADDR``, and uvicorn, grpc and ``ovq serve`` itself all set it (measured: a second ``SO_REUSEADDR`` socket
binds a port that a first one has bound, and not one it listens on). The gRPC port was checked and let go, and the
REST socket only bound until uvicorn started: another program could take either while the models compiled. While
they compile both ports answer as a server whose models are not ready (:mod:`~ovq.serving.starting`,
:mod:`~ovq.serving.grpc_starting`).

gRPC on Linux sets ``SO_REUSEPORT`` on its listeners: a second ``ovq serve`` on the same gRPC port then bound it
too and the kernel split the connections between the two processes (measured: two processes LISTENing on
127.0.0.1:28081). ``GRPC_OPTIONS`` turns that off, and the check here binds without it.
"""

from __future__ import annotations

import errno
import functools
import os
import socket
import weakref
from dataclasses import dataclass

from ovq.core.errors import OvqError
from ovq.serving.grpc_starting import answer_grpc
from ovq.serving.starting import StartingAnswers

GRPC_NO_REUSEPORT = ("grpc.so_reuseport", 0)
REST_BACKLOG = 2048  # uvicorn's: the connections that wait while the REST server takes the port over
GRPC_BACKLOG = 128  # gRPC clients waiting to be answered while the models load (reset when grpc binds the port)


class ListenError(OvqError):
    """``ovq serve`` cannot listen where it was told to (port in use, unknown host, not this machine's address)."""


@dataclass
class Listeners:
    """The resolved address, the listening REST socket (answered by :class:`~ovq.serving.starting.StartingAnswers`
    until :meth:`stop_answering`), and the gRPC port held until grpc binds it."""

    address: str  # numeric: what grpc binds, so both servers agree on the interface
    http: socket.socket
    grpc_port: int
    grpc: socket.socket | None = None  # ovq's listening socket on the gRPC port, until release_grpc()
    answers: StartingAnswers | None = None  # what answers on the REST port until its server does
    grpc_answers: StartingAnswers | None = None  # and on the gRPC port until grpc binds it

    @property
    def grpc_target(self) -> str:
        return f"{bracketed(self.address)}:{self.grpc_port}"

    def release_grpc(self) -> None:
        """Let go of the gRPC port, for grpc to bind it at once (grpc cannot take over a socket): calls answered
        meanwhile are answered to the end; connections in the backlog are reset (their clients see UNAVAILABLE)."""
        if self.grpc_answers is not None:
            self.grpc_answers.stop()
            self.grpc_answers = None
        if self.grpc is not None:
            self.grpc.close()
            self.grpc = None

    def stop_answering(self) -> None:
        """Stop answering on the REST port, for its server to accept there (connections wait in the backlog)."""
        if self.answers is not None:
            self.answers.stop()
            self.answers = None

    def close(self) -> None:
        self.stop_answering()
        self.http.close()
        self.release_grpc()


def bracketed(host: str) -> str:
    """``host`` as it goes before ``:PORT`` in a URL or address (IPv6 in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def resolve(host: str, port: int) -> tuple[socket.AddressFamily, str]:
    """The family and numeric address ``host`` names (its first, as uvicorn and grpc would take it)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else "not a valid host name"
        raise ListenError(f"{bracketed(host)}:{port}: cannot resolve the host ({reason})") from None
    family, _, _, _, sockaddr = infos[0]
    return family, str(sockaddr[0])


def _reason(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "address already in use"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "not an address of this machine"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges)"
    return exc.strerror or str(exc)


def _bound(family: socket.AddressFamily, address: str, port: int, *, backlog: int | None = None) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        if backlog is not None:
            sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ListenError(f"{bracketed(address)}:{port}: {_reason(exc)}") from None
    return sock


def check_free(family: socket.AddressFamily, address: str, port: int) -> None:
    """Bind ``address:port`` as a listener would (``SO_REUSEADDR``, no ``SO_REUSEPORT``) and let go."""
    _bound(family, address, port).close()


def bind_listeners(host: str, http_port: int, grpc_port: int) -> Listeners:
    """Resolve ``host``, listen on the REST port (answering as a server whose models are not ready, until
    :meth:`Listeners.stop_answering`; kept for uvicorn) and hold the gRPC port (answering alike, until
    :meth:`Listeners.release_grpc` lets grpc bind it)."""
    family, address = resolve(host, http_port)
    http = hold(family, address, http_port, backlog=REST_BACKLOG)
    listeners = Listeners(address, http, grpc_port)
    try:
        listeners.grpc = hold(family, address, grpc_port, backlog=GRPC_BACKLOG)
        listeners.answers = StartingAnswers(held(http.dup()), REST_BACKLOG)  # closed in forked children too
        listeners.grpc_answers = StartingAnswers(held(listeners.grpc.dup()), answer=answer_grpc)
    except BaseException:
        listeners.close()
        raise
    return listeners


# The sockets held. A child forked meanwhile (OpenVINO's telemetry sends each event from one while a model
# converts: 21 forks for FastestDet's ONNX) has a copy of each that would keep the port, listening, after ovq let go
# of it (grpc's bind would fail) or ended (connections would wait for nobody): the copies are closed in the child,
# first thing.
_HELD: weakref.WeakSet[socket.socket] = weakref.WeakSet()


def _close_held_in_child() -> None:
    for sock in list(_HELD):
        sock.close()


@functools.cache
def _close_held_in_children() -> None:
    """Have every child forked from now on close the held sockets (registered once per process, at the first hold:
    nothing happens on import)."""
    os.register_at_fork(after_in_child=_close_held_in_child)


def hold(family: socket.AddressFamily, address: str, port: int, *, backlog: int = 1) -> socket.socket:
    """Bind ``address:port`` (as :func:`check_free` does) and listen, so that no other program can bind it (see the
    module's docstring) until the socket is closed. The socket is not inherited: not by a program started with
    ``exec`` (close-on-exec, Python's default) and not by a forked child (closed in it, see :func:`held`)."""
    return held(_bound(family, address, port, backlog=backlog))


def held(sock: socket.socket) -> socket.socket:
    """``sock``, closed in every child forked from now on (its copy there would keep the port)."""
    _close_held_in_children()
    _HELD.add(sock)
    return sock


def grpc_bind_failed(listeners: Listeners) -> ListenError:
    """The error for grpc's reasonless ``Failed to bind``: the port checked again for the reason."""
    family = socket.AF_INET6 if ":" in listeners.address else socket.AF_INET
    try:
        check_free(family, listeners.address, listeners.grpc_port)
    except ListenError as exc:
        return exc
    return ListenError(f"{listeners.grpc_target}: gRPC cannot listen there")
