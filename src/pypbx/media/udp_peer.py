"""Connecting a UDP socket to its one peer, and undoing that.

A connected UDP socket gets only its peer's datagrams, filtered by the kernel, and sends
without an address: no address to format into a tuple on each receive, none to parse on
each send, and a cached route. The relay worker connects a leg's socket to the latched
phone while that phone sends, and undoes it when the phone falls silent, so that a new
source can latch again. Python has no call for the undoing (a `connect` to an address
whose family is AF_UNSPEC), hence libc through ctypes; it runs once per silence, not per
packet.
"""

from __future__ import annotations

import ctypes
import os
import socket
import struct
from typing import Any

__all__ = ["disconnect"]

# A struct sockaddr whose family is AF_UNSPEC: the kernel dissolves the association.
_UNSPEC = struct.pack("=H14x", socket.AF_UNSPEC)
_libc = ctypes.CDLL(None, use_errno=True)
_connect = _libc.connect
_connect.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
_connect.restype = ctypes.c_int


def disconnect(sock: socket.socket, bound: tuple[Any, ...]) -> None:
    """Let `sock` receive from anyone again (a no-op on a socket that is not connected).

    `bound`: the address `sock` was bound to before it was connected. The kernel keeps a
    port the socket was bound to by number (pypbx's RTP ports are), but gives up one it
    chose itself (a bind to port 0, as in tests): then the socket is bound to it again.
    """
    if _connect(sock.fileno(), _UNSPEC, len(_UNSPEC)) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    if sock.getsockname()[1] != bound[1]:
        sock.bind(bound)
