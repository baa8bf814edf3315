"""Status reports authenticated per device: an HMAC key issued at enrolment.

The operator keeps one enrolment secret (``walle deploy enrol-secret``). Enrolling a device
(``walle deploy enrol DEVICE_ID --home HOME``) writes the device's own key,
``HMAC-SHA256(secret, device_id)``, to ``HOME/device.key``; the agent puts
``HMAC-SHA256(device key, report)`` in each report's ``mac``. The gateway and the rollout
controller hold the secret, derive the device's key from the id the report claims and
refuse a report whose MAC does not match, so one device (or an outsider) cannot speak for
another, and a rollout decision counts distinct authenticated devices. The secret signs no
release: whoever steals it can forge reports (halt or advance a staged rollout within what
the rollout role allows) but cannot install anything.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from pathlib import Path

from walle.deploy.channel import StatusReport
from walle.errors import ValidationError, WalleError

#: Name of the device key file in an agent's home.
DEVICE_KEY_FILE = "device.key"
_DEVICE_DOMAIN = b"walle-device-v1\0"
_REPORT_DOMAIN = b"walle-report-v1\0"


class ReportAuthError(WalleError):
    """A status report without a valid MAC for the device it names."""


def _read_hex(path: Path, what: str) -> bytes:
    try:
        value = bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError) as exc:
        raise ValidationError(f"unreadable {what}: {exc}", where=str(path)) from exc
    if len(value) < 16:
        raise ValidationError(f"{what} is too short ({len(value)} bytes)", where=str(path))
    return value


def _write_secret(path: Path, value: bytes) -> None:
    if path.exists():
        raise ValidationError("refusing to overwrite an existing secret", where=str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(value.hex() + "\n")


def _report_payload(report: StatusReport) -> bytes:
    body = report.model_dump(mode="json", exclude={"mac"})
    return _REPORT_DOMAIN + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def report_mac(device_key: bytes, report: StatusReport) -> str:
    """Hex HMAC-SHA256 of the report (all fields but ``mac``) under ``device_key``."""
    return hmac.new(device_key, _report_payload(report), hashlib.sha256).hexdigest()


class Enrolment:
    """The enrolment secret: derives device keys and checks reports' MACs."""

    def __init__(self, secret: bytes):
        self._secret = secret

    @classmethod
    def new(cls, path: Path) -> Enrolment:
        """Create a random 32-byte secret at ``path`` (mode 0600)."""
        value = secrets.token_bytes(32)
        _write_secret(path, value)
        return cls(value)

    @classmethod
    def load(cls, path: Path) -> Enrolment:
        """Read a secret written by ``new``; errors name the file."""
        return cls(_read_hex(path, "enrolment secret"))

    def device_key(self, device_id: str) -> bytes:
        """The key of device ``device_id``."""
        message = _DEVICE_DOMAIN + device_id.encode()
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def enrol(self, device_id: str, home: Path) -> Path:
        """Write ``device_id``'s key to ``home/device.key``; return the file."""
        path = home / DEVICE_KEY_FILE
        _write_secret(path, self.device_key(device_id))
        return path

    def check(self, report: StatusReport) -> None:
        """Accept ``report`` only with a valid MAC for the device it names."""
        if not report.mac:
            raise ReportAuthError(
                f"status report from {report.device_id!r} on {report.task} carries no MAC"
                " (enrol the device: walle deploy enrol)"
            )
        expected = report_mac(self.device_key(report.device_id), report)
        if not hmac.compare_digest(expected, report.mac):
            raise ReportAuthError(
                f"status report from {report.device_id!r} on {report.task} has a MAC that"
                " does not match that device's key"
            )


def authenticate(report: StatusReport, home: Path) -> StatusReport:
    """``report`` with its MAC under the device key in ``home`` (unchanged without a key)."""
    key = _device_keys.get(home)
    if key is None:
        path = home / DEVICE_KEY_FILE
        if not path.exists():
            return report
        key = _device_keys[home] = _read_hex(path, "device key")
    return report.model_copy(update={"mac": report_mac(key, report)})


_device_keys: dict[Path, bytes] = {}
