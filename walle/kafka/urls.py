"""Broker URLs: ``kafka://HOST:PORT[,HOST:PORT]``, the one way walle names a cluster."""

from __future__ import annotations

from walle.errors import BrokerError

KAFKA_SCHEME = "kafka://"


def parse_broker_url(url: str) -> list[str]:
    """``"kafka://h1:p1,h2:p2"`` -> ``["h1:p1", "h2:p2"]``, the bootstrap servers.

    >>> parse_broker_url("kafka://127.0.0.1:9092,127.0.0.1:9093")
    ['127.0.0.1:9092', '127.0.0.1:9093']
    """
    if not url.startswith(KAFKA_SCHEME):
        scheme = url.split("://", 1)[0] if "://" in url else "(none)"
        raise BrokerError(
            f"broker URL {url!r} has scheme {scheme!r}: expected kafka://HOST:PORT[,HOST:PORT]"
        )
    servers = [part.strip() for part in url[len(KAFKA_SCHEME) :].split(",")]
    for server in servers:
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise BrokerError(f"broker URL {url!r}: {server!r} is not HOST:PORT")
    return servers
