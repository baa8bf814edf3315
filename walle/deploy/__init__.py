"""walle.deploy: signed task bundles, release policies, and the push-then-pull channel.

The package's public names are the light parts (bundles, signing, policies, install); the HTTP
store, gateway, agent, rollout controller, device-runtime host (``walle.deploy.device_host``)
and fleet tools live in their own modules and are imported where used.

Only the error tree (``walle.deploy.errors``) is imported with the package. The other names
load on first use (PEP 562 ``__getattr__``): they pull in pydantic models, YAML and the
crypto library, which a module such as ``walle.deploy.store`` (needing none of them) or
``walle.deploy.signing`` (needing no bundle or install model) should not pay for by merely
being in this package, nor the ``walle deploy`` commands built on them, ~0.1-0.3 s a process.
``from walle.deploy import X`` works for every name in ``__all__`` as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from walle._lazy import lazy_names
from walle.deploy.errors import (
    BundleRefused,
    ChannelError,
    DigestMismatchError,
    ExpiredNotificationError,
    HealthCheckError,
    IncompatibleRuntimeError,
    MalformedBundleError,
    OversizeBundleError,
    PathTraversalError,
    PolicyError,
    RollbackAttackError,
    RolloutError,
    StoreError,
    TamperedFileError,
    UnsignedBundleError,
    UntrustedSignatureError,
)

if TYPE_CHECKING:  # the names' types for type checkers; at run time they load on first use
    from walle.deploy.bundle import BuiltBundle, BundleContents, build_bundle, open_bundle
    from walle.deploy.install import ActiveRecord, Installer, accept_release
    from walle.deploy.manifest import RUNTIME_ABI, Manifest, TaskSpec
    from walle.deploy.notification import Notification, make_notification, sign_bundle
    from walle.deploy.policy import DeviceAttrs, ReleasePolicy, Stages, Targeting, load_policy
    from walle.deploy.signing import Signature, TrustStore, new_key

_LAZY = {  # public name -> the walle.deploy module that defines it
    "BuiltBundle": "walle.deploy.bundle",
    "BundleContents": "walle.deploy.bundle",
    "build_bundle": "walle.deploy.bundle",
    "open_bundle": "walle.deploy.bundle",
    "ActiveRecord": "walle.deploy.install",
    "Installer": "walle.deploy.install",
    "accept_release": "walle.deploy.install",
    "RUNTIME_ABI": "walle.deploy.manifest",
    "Manifest": "walle.deploy.manifest",
    "TaskSpec": "walle.deploy.manifest",
    "Notification": "walle.deploy.notification",
    "make_notification": "walle.deploy.notification",
    "sign_bundle": "walle.deploy.notification",
    "DeviceAttrs": "walle.deploy.policy",
    "ReleasePolicy": "walle.deploy.policy",
    "Stages": "walle.deploy.policy",
    "Targeting": "walle.deploy.policy",
    "load_policy": "walle.deploy.policy",
    "Signature": "walle.deploy.signing",
    "TrustStore": "walle.deploy.signing",
    "new_key": "walle.deploy.signing",
}

__all__ = [
    "RUNTIME_ABI",
    "ActiveRecord",
    "BuiltBundle",
    "BundleContents",
    "BundleRefused",
    "ChannelError",
    "DeviceAttrs",
    "DigestMismatchError",
    "ExpiredNotificationError",
    "HealthCheckError",
    "IncompatibleRuntimeError",
    "Installer",
    "MalformedBundleError",
    "Manifest",
    "Notification",
    "OversizeBundleError",
    "PathTraversalError",
    "PolicyError",
    "ReleasePolicy",
    "RollbackAttackError",
    "RolloutError",
    "Signature",
    "Stages",
    "StoreError",
    "TamperedFileError",
    "Targeting",
    "TaskSpec",
    "TrustStore",
    "UnsignedBundleError",
    "UntrustedSignatureError",
    "accept_release",
    "build_bundle",
    "load_policy",
    "make_notification",
    "new_key",
    "open_bundle",
    "sign_bundle",
]


__getattr__ = lazy_names("walle.deploy", _LAZY, globals())


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
