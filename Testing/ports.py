"""A TCP port for a test's own server or gloo rendezvous."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port that was free a moment ago. Another process can take it before the caller binds it (the two xdist
    workers both start servers and rendezvous), so callers retry on a new port when theirs is in use."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
