"""`walle deploy keygen` and `walle deploy root`: signing keys, root metadata, enrolment."""

from __future__ import annotations

from pathlib import Path

import click

from walle.cli._deploy_options import ENROLMENT, EXISTING, HOME, TRUST


@click.command("keygen")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("keys"),
    show_default=True,
    help="Directory for NAME.key and NAME.pub.",
)
@click.option("--name", default="release", show_default=True, help="Key file base name.")
def keys_new(out_dir: Path, name: str) -> None:
    """Create a new Ed25519 signing key pair, NAME.key and NAME.pub (for walle deploy root init)."""
    from walle.deploy.signing import new_key

    key_path, pub_path, kid = new_key(out_dir, name)
    click.echo(f"key {kid}: private {key_path}, public {pub_path}")


@click.group("root")
def root_group() -> None:
    """Root metadata: which keys may sign releases (release role) and stage changes
    (rollout role), k of n root keys to change that; device enrolment for status reports."""


@root_group.command("init")
@click.option("--root-key", "root_keys", type=EXISTING, multiple=True, required=True)
@click.option("--release-key", "release_keys", type=EXISTING, multiple=True, required=True)
@click.option("--rollout-key", "rollout_keys", type=EXISTING, multiple=True, required=True)
@click.option(
    "--threshold",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Root signatures needed.",
)
@click.option(
    "--previous",
    type=EXISTING,
    default=None,
    help="The root this one replaces (rotation/revocation): the version becomes its + 1.",
)
@click.option(
    "--expires-days",
    type=click.FloatRange(min=0, min_open=True),
    default=365.0,
    show_default=True,
    help="Days until devices stop trusting this root.",
)
@click.option("--out", type=click.Path(path_type=Path), required=True)
def root_init(
    root_keys: tuple[Path, ...],
    release_keys: tuple[Path, ...],
    rollout_keys: tuple[Path, ...],
    threshold: int,
    previous: Path | None,
    expires_days: float,
    out: Path,
) -> None:
    """Write unsigned root metadata from public keys (.pub); sign it with walle deploy root sign.

    A key left out of a new version (--previous) is revoked once devices take it.
    """
    from walle.deploy.roles import RootMetadata, new_root

    version = 1 if previous is None else RootMetadata.load(previous).signed.version + 1
    meta = new_root(
        {"root": list(root_keys), "release": list(release_keys), "rollout": list(rollout_keys)},
        {"root": threshold},
        version=version,
        expires_in_s=expires_days * 86400,
    )
    out.write_bytes(meta.to_bytes())
    click.echo(f"root v{version} written to {out}: sign it with {threshold} root key(s)")


@root_group.command("sign")
@click.argument("root_file", type=EXISTING)
@click.option("--key", "key_path", type=EXISTING, required=True, help="A root private key.")
def root_sign(root_file: Path, key_path: Path) -> None:
    """Add a root key's signature to ROOT_FILE (for a new version: old and new root keys)."""
    from walle.deploy.roles import RootMetadata
    from walle.deploy.signing import load_private_key

    meta = RootMetadata.load(root_file).signed_by(load_private_key(key_path))
    root_file.write_bytes(meta.to_bytes())
    click.echo(f"root v{meta.signed.version}: {len(meta.signatures)} signature(s)")


@root_group.command("update")
@click.argument("new_root", type=EXISTING)
@TRUST
def root_update(new_root: Path, trust_paths: tuple[Path, ...]) -> None:
    """Move a device's trust (--trust) to NEW_ROOT if the current root's keys signed it."""
    from walle.deploy.roles import RootMetadata, TrustStore

    trust = TrustStore.from_paths(list(trust_paths))
    trust.update(RootMetadata.load(new_root))
    click.echo(f"trusting root v{trust.version} ({trust.path})")


@root_group.command("enrol-secret")
@click.option("--out", type=click.Path(path_type=Path), required=True)
def root_enrol_secret(out: Path) -> None:
    """Create the enrolment secret the gateway and rollout controller check reports with."""
    from walle.deploy.enrolment import Enrolment

    Enrolment.new(out)
    click.echo(f"enrolment secret written to {out} (keep it off devices)")


@root_group.command("enrol")
@click.argument("device_id")
@ENROLMENT
@HOME
def root_enrol(device_id: str, secret_path: Path, home: Path) -> None:
    """Give device DEVICE_ID its status-report key (HOME/device.key)."""
    from walle.deploy.enrolment import Enrolment

    path = Enrolment.load(secret_path).enrol(device_id, home)
    click.echo(f"device {device_id} enrolled: {path}")
