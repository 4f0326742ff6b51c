"""`casegate serve --workers 2`: a burst of keep-alive connections is spread over both
workers (each listens on a socket of its own, `gateway/workers.py`), a worker the
supervisor restarts binds one of its own again, and a port that is taken is a clear
configuration error.

Which worker holds a connection is read from `/proc` (Linux, where Casegate runs and CI
tests it; without `/proc` these tests fail rather than skip): the server side of every
connection is a socket inode, and each worker's open descriptors name the inodes it holds.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from typing import Any

from tests.conftest import gateway_config
from tests.kit.gateway import GatewayProcess, free_port
from tests.kit.stub import UpstreamStub

BURST = 24  # all on one worker by chance: 2 / 2**24


ESTABLISHED, LISTEN = "01", "0A"


def _sockets(port: int) -> Iterator[tuple[str, int, str]]:
    """(state, remote port, inode) of every TCP socket whose local port is `port`."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                cols = line.split()
                if int(cols[1].rsplit(":", 1)[1], 16) == port:
                    yield cols[3], int(cols[2].rsplit(":", 1)[1], 16), cols[9]


def _server_inodes(port: int, client_ports: set[int]) -> dict[str, int]:
    """socket inode -> client port, for the server side of our established connections."""
    return {
        inode: rport
        for state, rport, inode in _sockets(port)
        if state == ESTABLISHED and rport in client_ports
    }


def _listeners(port: int) -> int:
    """How many sockets listen on the port (one per worker that is up)."""
    return sum(1 for state, _, _ in _sockets(port) if state == LISTEN)


def _owners(inodes: dict[str, int]) -> dict[int, int]:
    """inodes' value (a client port, say) -> pid of the process holding that socket."""
    owners: dict[int, int] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                owners[inodes[link[8:-1]]] = int(pid)
    return owners


def _get(conn: socket.socket, path: str) -> bytes:
    conn.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = conn.recv(4096)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data


def test_a_burst_of_connections_is_spread_over_both_workers(
    start_gateway: Any, upstream: UpstreamStub
) -> None:
    gw: GatewayProcess = start_gateway(gateway_config(upstream.url), workers=2)
    deadline = time.monotonic() + 30  # ready means one worker answers; wait for both
    while _listeners(gw.port) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _listeners(gw.port) == 2  # a socket of its own per worker
    # like a client opening its keep-alive pool: every connection at once, then requests
    conns = [socket.create_connection(("127.0.0.1", gw.port), timeout=10) for _ in range(BURST)]
    try:
        for conn in conns:
            assert _get(conn, "/healthz").startswith(b"HTTP/1.1 200")
        client_ports = {c.getsockname()[1] for c in conns}
        owners = _owners(_server_inodes(gw.port, client_ports))
        assert set(owners) == client_ports  # every connection is held by some process
        workers = set(owners.values())
        assert len(workers) == 2, f"one worker took the whole burst: {owners}"
        assert gw.proc.pid not in workers  # the parent only supervises
        # each keeps answering on its own connections
        for conn in conns:
            assert _get(conn, "/healthz").startswith(b"HTTP/1.1 200")
    finally:
        for conn in conns:
            conn.close()


def _worker_pids(gw: GatewayProcess) -> set[int]:
    """The processes holding a listening socket on the gateway's port."""
    listening = [inode for state, _, inode in _sockets(gw.port) if state == LISTEN]
    return set(_owners({inode: i for i, inode in enumerate(listening)}).values())


def test_a_restarted_worker_listens_on_a_socket_of_its_own_again(
    start_gateway: Any, upstream: UpstreamStub
) -> None:
    gw: GatewayProcess = start_gateway(gateway_config(upstream.url), workers=2)
    deadline = time.monotonic() + 30
    while len(_worker_pids(gw)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    before = _worker_pids(gw)
    assert len(before) == 2
    victim = min(before)
    os.kill(victim, signal.SIGKILL)  # the supervisor starts a new worker in its place
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = _worker_pids(gw)
        if len(now) == 2 and victim not in now:
            break
        time.sleep(0.1)
    now = _worker_pids(gw)
    assert victim not in now and len(now) == 2 and len(now & before) == 1
    assert _listeners(gw.port) == 2
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as conn:
        assert _get(conn, "/healthz").startswith(b"HTTP/1.1 200")


def test_two_workers_on_a_taken_port_is_a_configuration_error(
    start_gateway: Any, upstream: UpstreamStub
) -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        gw: GatewayProcess = start_gateway(
            gateway_config(upstream.url), workers=2, port=port, wait=False
        )
        deadline = time.monotonic() + 30
        while gw.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gw.proc.returncode == 2, gw.log()
        assert f"cannot listen on 127.0.0.1:{port}: the address is already in use" in gw.log()
