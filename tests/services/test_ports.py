"""free_port and wait_for_port against real sockets."""

from __future__ import annotations

import socket
import threading

from hotpath.services.ports import free_port, port_open, wait_for_port


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_wait_for_port_sees_a_listener_that_appears_later() -> None:
    port = free_port()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

    def listen_soon() -> None:
        listener.bind(("127.0.0.1", port))
        listener.listen()

    timer = threading.Timer(0.2, listen_soon)
    timer.start()
    try:
        assert wait_for_port("127.0.0.1", port, timeout=10)
        assert port_open("127.0.0.1", port)
    finally:
        timer.join()
        listener.close()


def test_wait_for_port_gives_up_at_the_deadline_of_the_injected_clock() -> None:
    ticks = iter([0.0, 0.0, 100.0, 100.0])
    assert not wait_for_port("127.0.0.1", free_port(), timeout=1, clock=lambda: next(ticks))
