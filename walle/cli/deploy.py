"""`walle` sub-commands of the deploy area: keys, bundles, store, releases, gateway, agent."""

from __future__ import annotations

from pathlib import Path

import click

_EXISTING = click.Path(exists=True, path_type=Path)


@click.group("keys")
def keys_group() -> None:
    """Manage Ed25519 signing keys."""


@keys_group.command("new")
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
    """Create a new signing key pair (the .pub goes to devices' trust directory)."""
    from walle.deploy.signing import new_key

    key_path, pub_path, kid = new_key(out_dir, name)
    click.echo(f"key {kid}: private {key_path}, public {pub_path}")


@click.group("bundle")
def bundle_group() -> None:
    """Build and sign task bundles."""


@bundle_group.command("build")
@click.argument("task_dir", type=_EXISTING)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("dist"),
    show_default=True,
    help="Where the bundle is written.",
)
def bundle_build(task_dir: Path, out_dir: Path) -> None:
    """Pack TASK_DIR (task.yaml + scripts + resources) into a content-addressed bundle."""
    from walle.deploy.bundle import build_bundle

    built = build_bundle(task_dir, out_dir)
    click.echo(f"{built.path} sha256={built.digest} size={built.size}")


@bundle_group.command("sign")
@click.argument("bundle", type=_EXISTING)
@click.option("--key", "key_path", type=_EXISTING, required=True, help="Private key (.key).")
def bundle_sign(bundle: Path, key_path: Path) -> None:
    """Sign BUNDLE's digest; writes BUNDLE.sig next to it."""
    from walle.deploy.notification import sign_bundle
    from walle.deploy.signing import load_private_key

    click.echo(str(sign_bundle(bundle, load_private_key(key_path))))


COMMANDS: list[click.Command] = [keys_group, bundle_group]
