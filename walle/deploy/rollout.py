"""Staged rollouts that move on their own: advance on success, halt on failures.

``RolloutController`` is the pure part: it folds release notifications and agents' status
reports and says, per task, what ``decide_stage`` wants for the release in force. It counts
each device's *last* report on that release (same digest): ``installed`` is a success;
``rolled_back`` (failed its health check), ``failed``, ``refused`` and ``download_failed``
are failures. The reports of the devices the current stage added (their bucket lies in the
stage's band, see ``stage_band``) decide when the stage has seen enough to advance, so a
stage never advances on the strength of the stage before it.

``RolloutWatcher`` runs a controller against Kafka: a supervised ``TopicFollower`` reads the
releases and status topics from the beginning, and once caught up it applies each decision
by publishing a notification whose control layer it signs with the rollout key: the next
stage (``advance``) or the same release paused with the failure rate as the reason
(``halt``). It always verifies first (a trust store and the enrolment secret are required):
notifications not signed by the root's roles, expired or future-dated, and reports without a
valid device MAC are dropped (counted in ``dropped``), so forged records never move a
rollout. Its key must hold the rollout (or release) role in that root, or every step it
signed would be dropped downstream. It runs on its own as ``walle deploy rollout`` (the
gateway, which faces devices, holds no signing key).
"""

from __future__ import annotations

from dataclasses import dataclass

import pydantic
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from walle.deploy.channel import (
    FAILED_STATES,
    ChannelTopics,
    StatusReport,
    ensure_topics,
    read_topic,
)
from walle.deploy.enrolment import Enrolment, ReportAuthError
from walle.deploy.errors import BundleRefused
from walle.deploy.follower import FollowerSettings, TopicFollower
from walle.deploy.freshness import verify_record
from walle.deploy.notification import Notification
from walle.deploy.policy import StageDecision, decide_stage, in_stage_band
from walle.deploy.release import DEFAULT_TTL_S, advance, halt
from walle.deploy.roles import TrustStore
from walle.deploy.signing import key_id
from walle.errors import ValidationError
from walle.logging import get_logger

_log = get_logger("deploy.rollout")

__all__ = ["FAILED_STATES", "RolloutAction", "RolloutController", "RolloutWatcher", "StageTally"]


@dataclass(frozen=True)
class StageTally:
    """Reports on one release: successes, failures, and reports from the current stage."""

    installed: int
    failed: int
    stage_reports: int

    @property
    def failure_rate(self) -> float:
        """Failed share of all reports (0 with none)."""
        total = self.installed + self.failed
        return self.failed / total if total else 0.0


@dataclass(frozen=True)
class RolloutAction:
    """What the controller wants done with the release in force for ``task``."""

    task: str
    decision: StageDecision
    note: Notification
    tally: StageTally

    def describe(self) -> str:
        """One line for logs and the CLI."""
        policy = self.note.policy
        stages = policy.stages.percentages if policy.stages else (100.0,)
        return (
            f"{self.task} v{self.note.version} stage {policy.stage + 1}/{len(stages)} "
            f"({policy.effective_percentage:g}%): {self.tally.installed} installed, "
            f"{self.tally.failed} failed ({self.tally.failure_rate:.0%}), "
            f"{self.tally.stage_reports} from this stage -> {self.decision}"
        )


class RolloutController:
    """Folds notifications and status reports; ``actions()`` lists what to publish."""

    def __init__(self) -> None:
        self.current: dict[str, Notification] = {}
        self._reports: dict[str, dict[str, StatusReport]] = {}

    def reset(self) -> None:
        """Forget everything (before re-reading the topics from the beginning)."""
        self.current.clear()
        self._reports.clear()

    def observe_release(self, note: Notification) -> None:
        """The notification now in force for its task (an older ``seq`` never replaces it)."""
        current = self.current.get(note.task)
        if current is None or note.seq >= current.seq:
            self.current[note.task] = note

    def observe_report(self, report: StatusReport) -> None:
        """A device's report; only its latest one per task counts (by the device's own
        ``ts``, which its MAC covers: a replayed older report does not undo a newer one)."""
        known = self._reports.setdefault(report.task, {})
        last = known.get(report.device_id)
        if last is None or report.ts >= last.ts:
            known[report.device_id] = report

    def tally(self, task: str) -> StageTally:
        """The reports on the release in force for ``task``."""
        note = self.current[task]
        installed = failed = in_stage = 0
        for device_id, report in self._reports.get(task, {}).items():
            if report.digest != note.digest or report.version != note.version:
                continue
            ok = report.state == "installed"
            if not ok and report.state not in FAILED_STATES:
                continue
            installed += ok
            failed += not ok
            in_stage += in_stage_band(device_id, note.policy)
        return StageTally(installed, failed, in_stage)

    def decide(self, task: str) -> RolloutAction:
        """What ``decide_stage`` says for ``task`` now (a paused release holds)."""
        note = self.current[task]
        tally = self.tally(task)
        if note.paused or note.policy.stages is None:
            return RolloutAction(task, "hold" if note.paused else "complete", note, tally)
        decision = decide_stage(note.policy, tally.installed, tally.failed, tally.stage_reports)
        return RolloutAction(task, decision, note, tally)

    def actions(self) -> list[RolloutAction]:
        """The advances and halts due now, one per task at most."""
        due = (self.decide(task) for task in sorted(self.current))
        return [action for action in due if action.decision in ("advance", "halt")]


def _check_setup(private: Ed25519PrivateKey, trust: TrustStore, enrolment: Enrolment) -> None:
    """Refuse a watcher that could act on unverified records or sign unusable steps."""
    for value, kind, name, what in (
        (trust, TrustStore, "trust", "the root whose roles sign notifications"),
        (enrolment, Enrolment, "enrolment", "the secret that authenticates reports"),
        (private, Ed25519PrivateKey, "private", "the rollout key"),
    ):
        if not isinstance(value, kind):
            raise TypeError(
                f"RolloutWatcher needs {name}={kind.__name__} ({what}), got"
                f" {type(value).__name__}: it never acts on unverified records"
            )
    kid = key_id(private.public_key())
    held = trust.root.signed.role_of(kid)
    if not {"rollout", "release"} & set(held):
        why = f"it holds {', '.join(held)}" if held else "it is revoked or was never trusted"
        raise ValidationError(
            f"the rollout key {kid} may not sign stage changes in root v{trust.version}"
            f" ({why}): every advance or halt it signed would be dropped. Use the key the"
            " root names as rollout (walle deploy root init --rollout-key)",
            field="private",
        )


class RolloutWatcher:
    """Applies a ``RolloutController``'s decisions to the channel on Kafka, on a thread.

    ``applied`` lists the notifications it published, oldest first.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: ChannelTopics,
        private: Ed25519PrivateKey,
        *,
        trust: TrustStore,
        enrolment: Enrolment,
        settings: FollowerSettings | None = None,
        ttl_s: float = DEFAULT_TTL_S,
    ):
        _check_setup(private, trust, enrolment)
        self.bootstrap = bootstrap
        self.trust = trust
        self.enrolment = enrolment
        self.dropped = 0
        self.topics = topics
        self.private = private
        self.ttl_s = ttl_s
        self.controller = RolloutController()
        self.applied: list[Notification] = []
        self.errors = 0
        self._live = False
        self._dirty = False
        self.follower = TopicFollower(
            bootstrap,
            [topics.releases, topics.status],
            self,
            settings=settings,
            name="rollout-watcher",
            prepare=lambda: ensure_topics(bootstrap, topics),
        )

    def start(self) -> None:
        """Start following the topics (decisions begin once caught up)."""
        self.follower.start()

    def stop(self) -> None:
        """Stop the thread."""
        self.follower.stop()

    def run_once(self) -> list[Notification]:
        """Read both topics to their end now, apply what is due, return what was published."""
        self.on_start()
        for topic in (self.topics.releases, self.topics.status):
            for offset, (key, value) in enumerate(read_topic(self.bootstrap, topic)):
                self.on_record(topic, key, value, offset)
        self._live = True
        return self.apply_due()

    # -- FollowHandler -----------------------------------------------------------------------

    def on_start(self) -> None:
        """A fresh pass: rebuild the controller's view from offset 0."""
        self.controller.reset()
        self._live = False

    def on_record(self, topic: str, key: bytes, value: bytes, offset: int) -> None:
        """Fold one release notification or status report."""
        try:
            if topic == self.topics.releases:
                note = Notification.model_validate_json(value)
                verify_record(note, self.trust)
                self.controller.observe_release(note)
            else:
                report = StatusReport.model_validate_json(value)
                self.enrolment.check(report)
                self.controller.observe_report(report)
        except pydantic.ValidationError as exc:
            _log.warning("bad record skipped", topic=topic, offset=offset, error=str(exc))
            return
        except (BundleRefused, ReportAuthError) as exc:
            self.dropped += 1
            _log.warning("unverified record dropped", topic=topic, offset=offset, error=str(exc))
            return
        self._dirty = True

    def on_caught_up(self) -> None:
        """Decide on what the topics held."""
        self._live = True
        self.apply_due()

    def on_idle(self) -> None:
        """Decide again when new records came in."""
        if self._live and self._dirty:
            self.apply_due()

    # -- applying ----------------------------------------------------------------------------

    def apply_due(self) -> list[Notification]:
        """Publish every advance and halt due now; returns what was published."""
        self._dirty = False
        published = []
        for action in self.controller.actions():
            try:
                note = self._apply(action)
            except Exception as exc:  # a failed publish is retried at the next decision
                self.errors += 1
                self._dirty = True
                _log.error("rollout step failed", task=action.task, error=repr(exc))
                continue
            self.controller.observe_release(note)  # do not decide twice on the old note
            self.applied.append(note)
            published.append(note)
        return published

    def _apply(self, action: RolloutAction) -> Notification:
        _log.info("rollout step", step=action.describe())
        if action.decision == "advance":
            return advance(
                action.task, reason=f"advanced: {action.describe()}", bootstrap=self.bootstrap,
                private=self.private, topics=self.topics, ttl_s=self.ttl_s, current=action.note,
                trust=self.trust,
            )  # fmt: skip
        return halt(
            action.task, f"halted: {action.describe()}", bootstrap=self.bootstrap,
            private=self.private, topics=self.topics, ttl_s=self.ttl_s, current=action.note,
            trust=self.trust,
        )  # fmt: skip
