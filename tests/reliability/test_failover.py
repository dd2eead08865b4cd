"""Control plane failover with real processes on a real PostgreSQL: three ``driftloop up``
replicas of one project; the leader is killed with SIGKILL while it delivers a transition's
notification, then the retrain worker's leader while it runs the retrain that transition
started. Another replica takes each role over within two evaluation intervals, no notification
reaches the webhook twice, the retrain job is neither lost nor duplicated, no transition is
lost, and the loop closes (v2 deployed and verified, the monitor back to OK, the incident
resolved)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from driftloop.leadership.tables import control_leases
from driftloop.metrics.points import MetricPoint
from driftloop.monitors.events import MonitorState
from driftloop.pipeline.queue import JobState
from driftloop.system import DriftloopSystem
from pipeline.world import make_snapshots
from reliability.project import (
    DRIFTLOOP,
    MODEL,
    LoopProcess,
    ReliabilityProject,
    free_port,
    wait_ready,
)
from reliability.test_kill9 import Traffic

INTERVAL = 1.5
"""Seconds between monitor evaluations (``--monitor-interval``)."""
LEASE = {"lease_duration": "2s", "renew_interval": "0.5s"}
"""A takeover within lease + one try: 2.5 s, under two evaluation intervals."""
SLOW_DELIVERY = 2.0
"""The receiver holds the ALERT's request this long: the leader dies while it delivers."""


@dataclass
class Receiver:
    """A webhook receiver on loopback that counts every request by event id."""

    received: list[dict[str, str]] = field(default_factory=list)
    slow_states: set[str] = field(default_factory=set)
    server: ThreadingHTTPServer | None = None

    def __enter__(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.received.append(body)
                if body["state"] in receiver.slow_states and not body["retrain_outcome"]:
                    time.sleep(SLOW_DELIVERY)
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                del format, args

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for body in self.received:
            counts[body["event_id"]] = counts.get(body["event_id"], 0) + 1
        return counts


class Risk:
    """A metric the test controls: points of ``risk`` every 0.1 s at the current value."""

    def __init__(self, system: DriftloopSystem) -> None:
        self.system = system
        self.value = 0.1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.system.metric_store.write(
                [MetricPoint("risk", self.value, time.time(), {"model": MODEL}, uuid.uuid4().hex)]
            )

    def __enter__(self) -> Risk:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def leaders(system: DriftloopSystem) -> dict[str, tuple[str, int]]:
    with system.database.engine.connect() as connection:
        rows = connection.execute(control_leases.select()).all()
    return {row.role: (row.holder, row.token) for row in rows}


def pid_of(holder: str) -> int:
    return int(holder.split(":")[1])


def wait_for(what: str, check: object, timeout: float, logs: list[Path]) -> float:
    """Poll ``check()`` until true; returns the seconds it took."""
    assert callable(check)
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            tails = "\n".join(f"--- {log}\n{log.read_text()[-2500:]}" for log in logs)
            raise AssertionError(f"{what}: not within {timeout}s\n{tails}")
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.fixture
def replicas(
    tmp_path: Path, fresh_postgres_url: str
) -> Iterator[tuple[list[LoopProcess], Receiver]]:
    with Receiver(slow_states={"ALERT"}) as receiver:
        project = ReliabilityProject.create(
            tmp_path / "project",
            store=fresh_postgres_url,
            pipeline={"worker_stale_after": "10m"},  # only the takeover frees the job at once
            extra={
                "control": LEASE,
                "notifiers": {
                    "hook": {
                        "type": "webhook",
                        "url": receiver.url,
                        "payload": {
                            "event_id": "{{event_id}}",
                            "state": "{{state}}",
                            "retrain_outcome": "{{retrain_outcome}}",
                        },
                    }
                },
                "monitors": [
                    {
                        "name": "risk",
                        "metric": "risk",
                        "aggregation": "avg",
                        "window": "2s",
                        "group_by": ["model"],
                        "above": {"critical": 0.5},
                        "message": "risk of {{model}} is {{value}} "
                        "{{#is_alert}}@retrain{{/is_alert}} @hook",
                    }
                ],
            },
        )
        project.push(make_snapshots().drifted)  # the newer snapshot the retrain learns from
        processes = [LoopProcess(project, free_port(), tmp_path / f"up-{n}.log") for n in range(3)]
        try:
            for process in processes:  # started together: the first to try leads
                process.start(
                    "up", "--port", str(process.port), "--monitor-interval", str(INTERVAL)
                )
            for process in processes:
                try:
                    wait_ready(process.url, 120)
                except RuntimeError:
                    raise AssertionError(process.log.read_text()[-3000:]) from None
            yield processes, receiver
        finally:
            for process in processes:
                process.stop()


@pytest.mark.long  # make bench; the short variant below runs in the suite
@pytest.mark.postgres
@pytest.mark.timeout(240)
def test_kill_9_of_the_leader_during_a_transition_and_a_retrain_then_the_loop_closes(
    replicas: tuple[list[LoopProcess], Receiver],
) -> None:
    processes, receiver = replicas
    logs = [process.log for process in processes]
    system = DriftloopSystem(processes[0].project.config)  # the test's view of the store
    by_pid = {process.process.pid: process for process in processes if process.process}
    alive = set(by_pid)
    takeovers: list[float] = []

    def kill_leader_of(role: str) -> str:
        holder, token = leaders(system)[role]
        victim = by_pid[pid_of(holder)]
        killed_roles = {r for r, (h, _) in leaders(system).items() if h == holder}
        victim.kill()
        killed_at = time.monotonic()
        alive.discard(pid_of(holder))
        for killed in sorted(killed_roles):  # each role the dead process led is taken over
            wait_for(
                f"takeover of {killed}",
                lambda k=killed: pid_of(leaders(system)[k][0]) in alive,
                4 * INTERVAL,
                logs,
            )
            takeovers.append(time.monotonic() - killed_at)  # at most this long after the kill
        assert leaders(system)[role][1] > token
        return holder

    wait_for(
        "a leader for each role", lambda: {"monitors", "worker"} <= set(leaders(system)), 30, logs
    )
    with Risk(system) as risk:
        # 1. the transition to ALERT: the leader dies while the webhook holds its request
        risk.value = 0.9
        wait_for("the ALERT notification", lambda: receiver.received, 30, logs)
        kill_leader_of("monitors")
        [job] = system.queue.list(model=MODEL)  # @retrain went first: the job is there

        # 2. the retrain: its worker's leader dies in the middle of it
        worker = pid_of(leaders(system)["worker"][0])
        client_side = next(
            p for p in processes if p.process and p.process.pid in alive and p.process.pid != worker
        )  # traffic for the verification
        with Traffic(client_side):
            wait_for(
                "the job running",
                lambda: (
                    system.queue.get(job.job_id).state
                    not in {JobState.QUEUED, *(s for s in JobState if s.finished)}
                ),
                60,
                logs,
            )
            kill_leader_of("worker")
            wait_for(
                "the job finished", lambda: system.queue.get(job.job_id).state.finished, 120, logs
            )
        # 3. the risk falls: the recovery is one transition, notified once
        risk.value = 0.1
        wait_for(
            "the recovery",
            lambda: system.engine.status("risk")[0].worst == MonitorState.OK,
            30,
            logs,
        )
        wait_for(
            "the recovery's notification",
            lambda: any(b["state"] == "OK" for b in receiver.received),
            30,
            logs,
        )
    time.sleep(1.0)  # anything late would arrive now

    assert max(takeovers) <= 2 * INTERVAL, takeovers
    final = system.queue.get(job.job_id)
    assert final.state == JobState.SUCCEEDED, (final.error, final)
    assert len(system.queue.list(model=MODEL)) == 1  # neither lost nor duplicated
    assert system.registry.aliases(MODEL)["production"] == 2
    counts = receiver.counts()
    assert set(counts.values()) == {1}, receiver.received  # nothing sent twice
    transitions = [b["state"] for b in receiver.received if not b["retrain_outcome"]]
    assert transitions == ["ALERT", "OK"], receiver.received
    outcomes = [b["retrain_outcome"] for b in receiver.received if b["retrain_outcome"]]
    assert outcomes == ["succeeded"], receiver.received
    events = list(reversed(system.engine.history(monitor="risk")))
    assert [(str(e.previous), str(e.state)) for e in events] == [
        ("OK", "ALERT"),
        ("ALERT", "OK"),
    ], events
    [incident] = system.engine.list_incidents(None, MODEL)
    assert incident.status == "resolved"
    for process in processes:
        if process.process and process.process.pid in alive:
            assert "became leader" in process.log.read_text()
    print(f"failover: roles taken over {[round(t, 2) for t in takeovers]} s after the kills")


@pytest.mark.postgres
@pytest.mark.timeout(180)
def test_kill_9_of_the_leader_while_it_notifies_a_transition_loses_and_doubles_nothing(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    """The short variant (no model, two replicas): the leader dies while it delivers the
    ALERT; the other leads within two evaluation intervals, sends nothing twice, and notifies
    the recovery once."""
    with Receiver(slow_states={"ALERT"}) as receiver:
        config = tmp_path / "driftloop.yaml"
        config.write_text(
            json.dumps(
                {
                    "store": fresh_postgres_url,
                    "control": LEASE,
                    "notifiers": {
                        "hook": {
                            "type": "webhook",
                            "url": receiver.url,
                            "payload": {
                                "event_id": "{{event_id}}",
                                "state": "{{state}}",
                                "retrain_outcome": "{{retrain_outcome}}",
                            },
                        }
                    },
                    "monitors": [
                        {
                            "name": "risk",
                            "metric": "risk",
                            "aggregation": "avg",
                            "window": "2s",
                            "group_by": ["model"],
                            "above": {"critical": 0.5},
                            "message": "risk of {{model}} is {{value}} @hook",
                        }
                    ],
                }
            )
        )
        from driftloop.config import load_config

        system = DriftloopSystem(load_config(config, environ={}))
        ports = [free_port(), free_port()]
        environ = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLOOP_")}
        logs = [tmp_path / f"up-{port}.log" for port in ports]
        processes = []
        for port, log in zip(ports, logs, strict=True):
            with log.open("wb") as output:
                processes.append(
                    subprocess.Popen(
                        [
                            DRIFTLOOP,
                            "up",
                            "--port",
                            str(port),
                            "--monitor-interval",
                            str(INTERVAL),
                            "--config",
                            str(config),
                        ],
                        cwd=tmp_path,
                        stdout=output,
                        stderr=subprocess.STDOUT,
                        env=environ,
                    )
                )
        try:
            for port in ports:
                wait_for("the replicas up", lambda p=port: healthy(p), 120, logs)
            wait_for("a leader", lambda: "monitors" in leaders(system), 30, logs)
            with Risk(system) as risk:
                risk.value = 0.9
                wait_for("the ALERT notification", lambda: receiver.received, 30, logs)
                holder, token = leaders(system)["monitors"]
                [victim] = [p for p in processes if p.pid == pid_of(holder)]
                victim.send_signal(signal.SIGKILL)
                victim.wait(30)
                took = wait_for(
                    "the takeover",
                    lambda: leaders(system)["monitors"][1] > token,
                    4 * INTERVAL,
                    logs,
                )
                risk.value = 0.1
                wait_for(
                    "the recovery's notification",
                    lambda: any(b["state"] == "OK" for b in receiver.received),
                    30,
                    logs,
                )
            time.sleep(1.0)
        finally:
            for process in processes:
                if process.poll() is None:
                    process.terminate()
                    process.wait(30)
    assert took <= 2 * INTERVAL, took
    assert [b["state"] for b in receiver.received] == ["ALERT", "OK"], receiver.received
    events = list(reversed(system.engine.history(monitor="risk")))
    assert [(str(e.previous), str(e.state)) for e in events] == [
        ("OK", "ALERT"),
        ("ALERT", "OK"),
    ], events
    print(f"failover: monitors role taken over {took:.2f} s after the kill")


def healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False
