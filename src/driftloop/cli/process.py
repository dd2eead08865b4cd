"""What the long-running commands (``up``, ``serve``, ``worker``, ``ingest``) share before they
start: the address they announce (``public_url`` follows the port unless set) and a clean exit
when the port is taken."""

from __future__ import annotations

import errno
import os
import socket
from typing import TYPE_CHECKING

from driftloop.cli.app import EXIT_PORT_IN_USE, report_error

if TYPE_CHECKING:
    from driftloop.config import Config

_ANY_ADDRESS = {"", "0.0.0.0", "::"}  # noqa: S104  (names the wildcard, binds nothing)


def follow_port(config: Config, host: str, port: int) -> Config:
    """``config`` with ``public_url`` at ``host:port`` unless the file or the environment set
    it; exported as ``DRIFTLOOP_PUBLIC_URL`` too, for the worker processes of ``serve``."""
    if "public_url" in config.model_fields_set:
        return config
    shown = "127.0.0.1" if host in _ANY_ADDRESS else host
    url = f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
    os.environ["DRIFTLOOP_PUBLIC_URL"] = url
    return config.model_copy(update={"public_url": url})


def ensure_port_free(host: str, port: int) -> None:
    """Exit with :data:`EXIT_PORT_IN_USE` and a clear message when ``host:port`` is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise report_error(
                "PortInUseError",
                f"port {port} on {host or '*'} is in use: stop what listens there or pass --port",
                EXIT_PORT_IN_USE,
            ) from None
