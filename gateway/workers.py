"""``casegate serve --workers N`` (N > 1): every worker listens on a socket of its own.

Usage::

    from gateway.workers import serve_workers
    serve_workers(uvicorn.Config("gateway.app:app_from_env", factory=True, workers=2, ...))

uvicorn's own ``--workers`` hands every worker one shared listening socket. Whichever
worker wakes first accepts every connection queued at that moment, so a client that
opens its keep-alive pool in one burst (an OpenAI SDK, a sidecar, the benchmark's 8
connections) lands whole on one worker, and the other workers idle: measured, 2 workers
served 1.0-1.2x one worker's throughput, with one worker at 76 % of a core and the
other at 1 %. Here each worker binds its own ``SO_REUSEPORT`` socket to the address, and
the kernel spreads new connections across them by a hash of the connection's addresses.

Everything else is uvicorn's supervisor (``uvicorn.supervisors.Multiprocess``): restarts
of dead or hung workers, SIGHUP, SIGTTIN/SIGTTOU, graceful SIGTERM. The parent keeps a
bound, non-listening socket on the address for its whole life, so no other program can
take the port while a worker restarts (``SO_REUSEPORT`` admits only sockets of the same
user). Without ``SO_REUSEPORT`` (not Linux), the shared socket is used as before.
"""

from __future__ import annotations

import errno
import socket
from typing import Any, cast

from gateway.settings import ConfigError

__all__ = ["WorkerListener", "reserve_address", "serve_workers"]


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _reuseport_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class WorkerListener:
    """Stands in the supervisor's socket list for "bind your own socket here".

    uvicorn's supervisor pickles its socket list into every worker it spawns; this object
    unpickles in the worker as a fresh ``SO_REUSEPORT`` socket bound to the address
    (uvicorn then listens on it), so each worker, restarted ones included, has its own.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port

    def __reduce__(self) -> tuple[Any, tuple[str, int]]:
        return (_reuseport_socket, (self.host, self.port))


def reserve_address(host: str, port: int) -> socket.socket:
    """The parent's hold on the address; :class:`ConfigError` when it is taken.

    A first bind without ``SO_REUSEPORT`` fails if anything at all is bound there (another
    Casegate with ``SO_REUSEPORT`` included), so two servers never share a port unawares.
    Port 0 is refused: every worker would get a different ephemeral port.
    """
    if port == 0:
        raise ConfigError("--port 0 cannot be used with --workers above 1")
    probe = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
    except OSError as exc:
        reason = "is already in use" if exc.errno == errno.EADDRINUSE else f"failed: {exc}"
        raise ConfigError(f"cannot listen on {host}:{port}: the address {reason}") from None
    finally:
        probe.close()
    try:
        return _reuseport_socket(host, port)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc}") from None


def serve_workers(config: Any) -> None:
    """Run ``config.workers`` uvicorn workers, each on its own socket (see the module)."""
    from uvicorn.supervisors import Multiprocess

    if not hasattr(socket, "SO_REUSEPORT"):  # pragma: no cover - Linux has it
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return
    hold = reserve_address(config.host, config.port)
    try:
        listener = cast(socket.socket, WorkerListener(config.host, config.port))
        Multiprocess(config, sockets=[listener]).run()
    finally:
        hold.close()
