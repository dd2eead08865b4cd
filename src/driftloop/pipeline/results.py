"""What a retrain job records as it goes (:attr:`Job.result`), typed.

Stored as JSON in ``retrain_jobs.result``. :meth:`JobResult.from_json` also reads rows written
by older driftloops: a remote job recorded its GitHub workflow dispatch under ``"dispatch"``
(before remote trainers had two phases); it reads back as the equivalent :attr:`remote_run`,
so a job that was waiting on its workflow when driftloop was upgraded waits on it again
instead of dispatching a second one. Keys this driftloop does not know are kept as they were.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_LEGACY_DISPATCH = "dispatch"
_LEGACY_DISPATCH_TRAINER = "github_dispatch"


@dataclass(frozen=True)
class JobResult:
    """The records of one job; every field is empty (``None``, ``{}``, ``[]``) until the step
    that writes it ran."""

    gate: dict[str, Any] = field(default_factory=dict)
    """The quality gate's decision (:meth:`GateDecision.to_dict`)."""
    remote_run: dict[str, Any] = field(default_factory=dict)
    """The remote run this job started (:meth:`RemoteRun.to_dict`), recorded before waiting."""
    uploaded_version: int | None = None
    """A version uploaded through ``POST /v1/models/{name}/versions`` that this job gates (and
    deploys and verifies) instead of training one."""
    rejected_version: int | None = None
    """A remotely registered version the gate rejected (it stays registered, without alias)."""
    deploy_mode: str | None = None
    """``direct``, ``canary`` or ``shadow``."""
    verification: list[str] = field(default_factory=list)
    """The verification's log lines."""
    verification_decision: dict[str, Any] = field(default_factory=dict)
    """The verification's verdict (:meth:`Decision.to_dict`)."""
    other: Mapping[str, Any] = field(default_factory=dict)
    """Keys this driftloop does not know (a newer one's), written back unchanged."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> JobResult:
        """The stored JSON object (``None``: nothing recorded yet), in this or an older shape."""
        if not data:
            return cls()
        known = {f.name for f in dataclasses.fields(cls)} - {"other"}
        values = {key: data[key] for key in known if data.get(key) not in (None, {}, [])}
        other = {
            key: value
            for key, value in data.items()
            if key not in known and key != _LEGACY_DISPATCH
        }
        legacy = data.get(_LEGACY_DISPATCH)
        if "remote_run" not in values and isinstance(legacy, Mapping):
            values["remote_run"] = _remote_run_of_dispatch(legacy)
        if "verification" in values:
            values["verification"] = [str(line) for line in values["verification"]]
        return cls(**values, other=other)

    def to_json(self) -> dict[str, Any]:
        """The JSON object stored in ``retrain_jobs.result`` (empty fields left out)."""
        data = dict(self.other)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name != "other" and value not in (None, {}, []):
                data[f.name] = value
        return data

    def with_changes(self, **changes: Any) -> JobResult:
        """A copy with ``changes`` (field names) applied."""
        return dataclasses.replace(self, **changes)


def _remote_run_of_dispatch(dispatch: Mapping[str, Any]) -> dict[str, Any]:
    """The :class:`~driftloop.trainers.remote.RemoteRun` dict that an old ``"dispatch"`` record
    (a ``WorkflowDispatch``) stands for: the GitHub dispatch trainer's run, whose state is that
    very record."""
    inputs = dispatch.get("inputs") or {}
    snapshot = inputs.get("dataset_snapshot") if isinstance(inputs, Mapping) else None
    return {
        "trainer": _LEGACY_DISPATCH_TRAINER,
        "snapshot_id": snapshot or None,
        "summary": f"dispatched {dispatch.get('workflow')} on {dispatch.get('repo')}@"
        f"{dispatch.get('ref')} (id {dispatch.get('correlation_id')})",
        "state": dict(dispatch),
    }
