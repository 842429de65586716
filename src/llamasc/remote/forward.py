"""A local port forward: a listening socket on 127.0.0.1 whose connections are piped into
SSH ``direct-tcpip`` channels (what ``ssh -L`` does), so the bench can talk HTTP to a
llama-server that listens on the remote host's loopback only.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024


class ChannelForward:
    """Accepts local connections and pipes each through a channel from ``open_channel``.

    ``open_channel(src_addr)`` returns a socket-like object with ``fileno``/``recv``/
    ``sendall``/``close`` (a paramiko ``Channel``). It is called per connection, so a
    reconnected SSH session is picked up by the next connection.
    """

    def __init__(self, open_channel: Callable[[tuple[str, int]], Any], remote_port: int) -> None:
        self.remote_port = remote_port
        self._open_channel = open_channel
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._port: int = self._sock.getsockname()[1]
        self._sock.settimeout(0.5)  # lets the accept loop notice close() on every platform
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._live: set[Any] = set()
        self._thread = threading.Thread(
            target=self._accept_loop, name=f"ssh-forward-{remote_port}", daemon=True
        )
        self._thread.start()

    @property
    def local_port(self) -> int:
        return self._port

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                conn, addr = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            threading.Thread(target=self._pipe, args=(conn, addr), daemon=True).start()

    def _pipe(self, conn: socket.socket, addr: tuple[str, int]) -> None:
        try:
            chan = self._open_channel(addr)
        except Exception as exc:  # the client sees a closed connection, like ssh -L
            log.debug("forward to port %d failed: %s", self.remote_port, exc)
            conn.close()
            return
        with self._lock:
            self._live.update((conn, chan))
        try:
            ends = [conn, chan]
            while not self._closed.is_set():
                readable, _, _ = select.select(ends, [], [], 0.5)
                if conn in readable:
                    data = conn.recv(_CHUNK)
                    if not data:
                        break
                    chan.sendall(data)
                if chan in readable:
                    data = chan.recv(_CHUNK)
                    if not data:
                        break
                    conn.sendall(data)
        except (OSError, EOFError) as exc:
            log.debug("forward connection ended: %s", exc)
        finally:
            with self._lock:
                self._live.discard(conn)
                self._live.discard(chan)
            with contextlib.suppress(Exception):
                chan.close()
            with contextlib.suppress(OSError):
                conn.close()

    def close(self) -> None:
        """Stop listening and cut every piped connection."""
        if self._closed.is_set():
            return
        self._closed.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked accept() on Linux
        with contextlib.suppress(OSError):
            self._sock.close()
        with self._lock:
            live = list(self._live)
        for end in live:
            with contextlib.suppress(Exception):
                end.close()
        self._thread.join(timeout=2.0)


__all__ = ["ChannelForward"]
