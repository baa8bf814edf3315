"""Atomic install: a process killed mid-install leaves the previous version active."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from walle.deploy.install import Installer, accept_release


def test_revert_returns_to_previous(installer, trust, built, release):
    v1, v2 = built(1), built(2)
    accept_release(installer, trust, release(v1), v1.path.read_bytes(), now=time.time())
    accept_release(installer, trust, release(v2), v2.path.read_bytes(), now=time.time())
    assert installer.active("demo").version == 2
    assert installer.revert("demo").version == 1
    assert installer.active("demo").previous is None
    assert installer.tasks() == ["demo"]


def test_kill_mid_install_keeps_previous_version(tmp_path, installer, trust, built, release):
    v1 = built(1)
    accept_release(installer, trust, release(v1), v1.path.read_bytes(), now=time.time())
    many = {f"res/{i:05d}.bin": os.urandom(2048) for i in range(3000)}
    v2 = built(2, resources=many)
    note = release(v2)
    (tmp_path / "note.json").write_bytes(note.to_bytes())
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from walle.deploy.install import Installer, accept_release
        from walle.deploy.notification import Notification
        from walle.deploy.signing import TrustStore
        note = Notification.model_validate_json(Path({str(tmp_path / "note.json")!r}).read_bytes())
        trust = TrustStore.from_paths([Path({str(tmp_path / "keys")!r})])
        data = Path({str(v2.path)!r}).read_bytes()
        accept_release(Installer(Path({str(installer.home)!r})), trust, note, data, now=time.time())
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    staging_root = installer.home / "tasks" / "demo"
    deadline = time.monotonic() + 30
    while not list(staging_root.glob(".staging-*/res/*")) and time.monotonic() < deadline:
        assert proc.poll() is None, "installer finished before it could be killed"
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL

    restarted = Installer(installer.home)
    assert restarted.active("demo").version == 1
    assert (restarted.path_of("demo", restarted.active("demo")) / "main.py").is_file()
    assert [p.name.startswith(".staging-") for p in restarted.recover()] == [True]
    assert not list(staging_root.glob(".staging-*"))
    assert sorted(p.name for p in (staging_root / "versions").iterdir()) == [f"1-{v1.digest[:12]}"]
    # and the interrupted release installs cleanly afterwards
    accept_release(restarted, trust, note, v2.path.read_bytes(), now=time.time())
    assert restarted.active("demo").version == 2
    assert isinstance(restarted.home, Path)
