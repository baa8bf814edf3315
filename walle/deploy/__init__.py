"""walle.deploy: signed task bundles, release policies, and the push-then-pull channel.

Importing this package imports only the light, dependency-free parts (bundles, signing,
policies, install); the HTTP store, gateway, agent, rollout controller, device-runtime
host (``walle.deploy.device_host``) and fleet tools live in their own modules and are
imported where used.
"""

from __future__ import annotations

from walle.deploy.bundle import BuiltBundle, BundleContents, build_bundle, open_bundle
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
from walle.deploy.install import ActiveRecord, Installer, accept_release
from walle.deploy.manifest import RUNTIME_ABI, Manifest, TaskSpec
from walle.deploy.notification import Notification, make_notification, sign_bundle
from walle.deploy.policy import DeviceAttrs, ReleasePolicy, Stages, Targeting, load_policy
from walle.deploy.signing import Signature, TrustStore, new_key

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
