"""The one network probe. `TRANSFERLAB_OFFLINE=1` answers "unreachable" without opening a socket."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable

OFFLINE_ENV = "TRANSFERLAB_OFFLINE"  # "1": never try the network (tests, air-gapped machines)
PROBE_TIMEOUT_S = 2.0
HTTPS_PORT = 443


def offline() -> bool:
    """True when `TRANSFERLAB_OFFLINE` says never to try the network."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes")


def reachable(hosts: str | Iterable[str | tuple[str, int]], timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True when a TCP connection to one of `hosts` opens within `timeout` seconds.

    Args:
        hosts: a host name (port 443), or several hosts or `(host, port)` pairs, tried in order.
        timeout: seconds per host. Defaults to `PROBE_TIMEOUT_S`.

    Returns:
        False at once when offline (`TRANSFERLAB_OFFLINE=1`), or when no host answers.
    """
    if offline():
        return False
    for entry in [hosts] if isinstance(hosts, str) else hosts:
        host, port = (entry, HTTPS_PORT) if isinstance(entry, str) else entry
        if not host:
            continue
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return True
        except OSError:
            continue
    return False
