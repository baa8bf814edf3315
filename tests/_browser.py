"""Headless Chromium for browser tests: Debian's package, driven by playwright.

``make test`` installs the ``chromium`` and ``chromium-driver`` packages when they are
missing; a test run started another way installs them here on first use (apt-get, as root,
as CI runs). Playwright never downloads a browser of its own: it launches /usr/bin/chromium.
Screenshots go to ``out/test-artifacts/`` (gitignored), whose path the tests print.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "out" / "test-artifacts"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium() -> Path:
    """The Chromium binary, installed from Debian's packages first if it is missing."""
    if CHROMIUM.exists():
        return CHROMIUM
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(
            f"{CHROMIUM} is missing: install the Debian packages chromium and chromium-driver"
            " (apt-get install chromium chromium-driver), or run `make test` as root"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    install = ["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"]
    subprocess.run(install, check=True, env=env)
    return CHROMIUM


def artifact_dir(name: str) -> Path:
    """``out/test-artifacts/<name>/``, created."""
    path = ARTIFACTS / name
    path.mkdir(parents=True, exist_ok=True)
    return path
