"""Child process of the crash test: replay the log in DB through APP, then exit 0.

Run as ``python device_crash_child.py APP DB``; prints ``ready`` once the runtime has
restored its checkpoint, so the parent knows the kill lands inside the replay.
"""

from __future__ import annotations

import sys


def main(app_path: str, db_path: str) -> None:
    """Resume the replay of ``db_path``'s own log from its last checkpoint, to the end."""
    from walle.logging import configure_logging
    from walle.streams.app import load_app
    from walle.streams.device import DeviceRuntime, RuntimeSettings

    configure_logging("ERROR")

    # compact_after_records=1: a new base once the records since the last one pass the devices
    # held (30), about every other checkpoint, so kills land in appends and in compactions
    settings = RuntimeSettings(
        batch_events=200, checkpoint_every_events=400, compact_after_records=1
    )
    with DeviceRuntime(load_app(app_path), db_path, settings=settings) as runtime:
        print("ready", runtime.committed_offset, flush=True)
        runtime.run(finish=True)
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
