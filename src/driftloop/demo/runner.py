"""``driftloop demo``: the whole loop, for real, in a fresh temporary project.

Same code paths as production: the serving app on a loopback port behind an API key, real HTTP
traffic from concurrent clients, insights through the local transport into the SQLite metric
store, the monitor engine, the notification router (Slack and a GitHub dispatch webhook, both
pointed at a local receiver), the retrain job with its gate, the hot swap and the verification.

This module runs the phases; :mod:`.config` and :mod:`.tuning` make the project,
:mod:`.view` shows it live and :mod:`.summary` judges and reports the outcome.
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
import webbrowser
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import uvicorn
import yaml
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from driftloop.config import CONFIG_FILENAME, Config, load_config
from driftloop.demo.config import DemoOptions, demo_config, monitors_note
from driftloop.demo.receiver import NotificationReceiver
from driftloop.demo.scenario import DRIFTING_SUBTOPICS, DemoScenario, build_scenario
from driftloop.demo.summary import DemoResult, DemoRun, finish
from driftloop.demo.tabular.project import install_example, on_path
from driftloop.demo.tabular.scenario import (
    DRIFT_FEATURE,
    INPUT_COLUMN,
    TABULAR_MODEL,
    build_tabular_scenario,
)
from driftloop.demo.traffic import TrafficGenerator
from driftloop.demo.tuning import tuning_for
from driftloop.demo.view import DemoView, reference_confidence
from driftloop.errors import ConfigError
from driftloop.objectstore import DatasetStore
from driftloop.pipeline.queue import JobState
from driftloop.pipeline.retry import REQUEST_KINDS
from driftloop.pipeline.runner import PipelineHooks
from driftloop.registry import ModelVersion
from driftloop.serving.keys import Scope
from driftloop.serving.limits import uvicorn_options
from driftloop.system import DriftloopSystem, SystemOptions
from driftloop.trainers.training import train_model

__all__ = ["DemoResult", "run_demo"]

SETTLED_KINDS = frozenset({"retries_exhausted", "retry_waiting"})


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def run_demo(options: DemoOptions, console: Console | None = None) -> DemoResult:
    console = console or Console()
    if options.speed <= 0:
        raise ConfigError("--speed must be positive")
    tuning_for(options.trainer)
    tabular = options.names.model == TABULAR_MODEL
    if tabular and options.trainer != "sklearn":
        raise ConfigError(
            "--trainer applies to the text scenario: the tabular one trains with its own "
            "plug-in trainer (segment)"
        )
    project = options.project_dir or Path(tempfile.mkdtemp(prefix="driftloop-demo-"))
    project.mkdir(parents=True, exist_ok=True)
    # the tabular model's code is the user's own: a plug-in package installed into the project
    plugins: AbstractContextManager[None] = (
        on_path(install_example(project)) if tabular else nullcontext()
    )
    receiver = NotificationReceiver()
    receiver.start()
    view = DemoView(options)
    try:
        with plugins:
            return _run(options, console, project, receiver, view)
    finally:
        receiver.stop()


def _train_with_progress(
    console: Console, config: Config, model: str, label: str, trigger: str
) -> ModelVersion:
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(label, total=1.0)

        def report(stage: str, fraction: float) -> None:
            progress.update(task, completed=fraction, description=f"{label}: {stage}")

        version = train_model(config, model, trigger=trigger, progress=report)
        progress.update(task, completed=1.0, description=f"{label}: done")
    return version


@dataclass(frozen=True)
class _Project:
    config: Config
    scenario: DemoScenario
    datasets: DatasetStore
    v1: ModelVersion
    port: int


def _set_up(
    options: DemoOptions,
    console: Console,
    project: Path,
    receiver: NotificationReceiver,
    view: DemoView,
) -> _Project:
    """Write the project, push snapshot 1 and train v1 on it."""
    port = _free_port()
    (project / CONFIG_FILENAME).write_text(
        "# written by 'driftloop demo'\n"
        + yaml.safe_dump(demo_config(options, receiver, port), sort_keys=False)
    )
    config = load_config(project / CONFIG_FILENAME)
    console.print(
        f"[bold]driftloop demo[/] in {project} (speed x{options.speed:g}: "
        f"a {options.window:g}s window stands for 5 minutes)"
    )
    view.config = config
    names = options.names
    tabular = names.model == TABULAR_MODEL
    scenario = build_tabular_scenario() if tabular else build_scenario(drifting=options.drifting)
    datasets = DatasetStore.from_config(config)
    first = datasets.push(scenario.snapshot_1, names.dataset)
    console.print(
        f"snapshot 1: {first.row_count} labeled image-segment records, {DRIFT_FEATURE} at or "
        "below its median"
        if tabular
        else f"snapshot 1: {first.row_count} labeled reviews without the subtopics "
        f"{', '.join(DRIFTING_SUBTOPICS)}"
    )
    trainer = config.models[names.model].trainer
    training_started = time.time()
    v1 = _train_with_progress(console, config, names.model, f"training v1 ({trainer})", "manual")
    view.training_v1 = time.time() - training_started
    view.log(
        "train",
        f"v1 trained on snapshot {first.snapshot_id} in {view.training_v1:.0f}s "
        "and set as production",
    )
    reference = reference_confidence(v1)
    view.reference = view.v1_reference = reference
    console.print(monitors_note(config, reference, names.confidence_monitor), style="dim")
    return _Project(config, scenario, datasets, v1, port)


@contextmanager
def _serving(system: DriftloopSystem, config: Config, port: int) -> Iterator[str]:
    """The system's app on ``127.0.0.1:port`` while the block runs; its URL."""
    app = system.create_app()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
            **uvicorn_options(config.serving),
        )
    )
    server_thread = threading.Thread(target=server.run, name="demo-server", daemon=True)
    server_thread.start()
    try:
        deadline = time.time() + 60
        while not server.started:
            if time.time() > deadline or not server_thread.is_alive():
                raise ConfigError(f"the demo server did not start on 127.0.0.1:{port}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        server_thread.join(timeout=30)


def _run(
    options: DemoOptions,
    console: Console,
    project: Path,
    receiver: NotificationReceiver,
    view: DemoView,
) -> DemoResult:
    setup = _set_up(options, console, project, receiver, view)
    system = DriftloopSystem(
        setup.config,
        SystemOptions(
            monitor_interval=max(0.5, options.window / 15),
            worker_poll_interval=0.5,
            event_listeners=[view.on_event],
            pipeline_hooks=PipelineHooks(on_state=view.on_job),
        ),
    )
    key = system.api_keys.create(Scope.ADMIN, name="demo").key
    with _serving(system, setup.config, setup.port) as url:
        console.print(
            f"serving v{setup.v1.version} at {url} — dashboard {url}/ (log in with key {key})"
        )
        if options.open_browser:
            webbrowser.open(f"{url}/login")
        system.start_background()
        tuning = tuning_for(options.trainer)
        tabular = options.names.model == TABULAR_MODEL
        traffic = TrafficGenerator(
            url,
            options.names.model,
            key,
            clients=options.clients,
            batch=tuning.batch,
            pause=tuning.pause,
            text_column=INPUT_COLUMN if tabular else "text",
            input_key="records" if tabular else "texts",
        )
        view.traffic = traffic
        traffic.set_phase("known", setup.scenario.known_traffic)
        traffic.start()
        view.log(
            "traffic",
            f"phase 1: {options.clients} clients send "
            + ("records like v1's training data" if tabular else "reviews from known subtopics"),
        )
        try:
            phase2_at = _drive(options, console, system, view, traffic, setup)
        finally:
            traffic.stop()
            system.stop_background()
    return finish(DemoRun(options, system, view, traffic, receiver, phase2_at, project), console)


def _drive(
    options: DemoOptions,
    console: Console,
    system: DriftloopSystem,
    view: DemoView,
    traffic: TrafficGenerator,
    setup: _Project,
) -> float | None:
    """Phase 1, then phase 2 once a window and a bit have passed, until the loop closes, the
    system settles without closing it or the timeout ends the demo. When phase 2 began."""
    phase2_at: float | None = None
    loop_closed_at: float | None = None
    with Live(view.render(), console=console, refresh_per_second=4) as live:
        view.phase = "1: known traffic"
        started = time.time()
        phase1_end = started + max(10.0, options.window * 1.3)
        hard_deadline = started + options.timeout
        while time.time() < hard_deadline:
            now = time.time()
            view.refresh(system)
            if phase2_at is None and now >= phase1_end:
                phase2_at = now
                _start_phase_2(options, view, traffic, setup.scenario, setup.datasets)
                view.phase = "2: drifted traffic"
            if (
                phase2_at is not None
                and loop_closed_at is None
                and _loop_closed(system, view, options.names.model)
            ):
                loop_closed_at = now
                view.phase = "closed: monitors OK on the new version"
                view.log("closed", "the loop closed: new version serving, monitors OK")
            if loop_closed_at is not None and now >= loop_closed_at + 3.0:
                break
            if (
                phase2_at is not None
                and loop_closed_at is None
                and _settled(system, options.window, options.names.model)
            ):
                view.phase = "settled: nothing more is due, the monitors still fire"
                view.log(
                    "settled",
                    "the loop did not close: no job runs or is due (the "
                    "open incidents' retries are used up or wait for new "
                    "labeled data)",
                )
                break
            live.update(view.render())
            time.sleep(0.25)
        live.update(view.render())
    return phase2_at


def _start_phase_2(
    options: DemoOptions,
    view: DemoView,
    traffic: TrafficGenerator,
    scenario: DemoScenario,
    datasets: DatasetStore,
) -> None:
    traffic.set_phase("drifted", scenario.drifted_traffic)
    tabular = options.names.model == TABULAR_MODEL
    view.log(
        "drift",
        f"phase 2: traffic shifts to records with {DRIFT_FEATURE} above its median"
        if tabular
        else f"phase 2: traffic shifts to unseen subtopics ({', '.join(DRIFTING_SUBTOPICS)})",
    )
    second = datasets.push(scenario.new_rows, options.names.dataset)
    view.log(
        "data",
        f"snapshot 2 lands in storage: {second.row_count} newly labeled rows, "
        + ("all of them like the new traffic" if tabular else "most of them of the new subtopics"),
    )


def _loop_closed(system: DriftloopSystem, view: DemoView, model: str) -> bool:
    jobs = system.queue.list(model=model, limit=5)
    succeeded = any(job.state == JobState.SUCCEEDED for job in jobs)
    return succeeded and system.monitors_ok(model) and (view.production or 0) >= 2


def _settled(system: DriftloopSystem, window: float, model: str) -> bool:
    """Nothing more will happen by itself: no job has run for a window, every monitor group of
    the serving version that is not OK has an ALERT incident that asked for a retrain, and
    every such incident has used up its retries or waits for new labeled data."""
    jobs = system.queue.list(model=model, limit=1)
    if system.queue.active(model) is not None or not jobs:
        return False
    finished_at = jobs[0].finished_at
    if finished_at is None or time.time() < finished_at + window:
        return False
    waiting = 0
    for summary in system.monitor_engine.list_incidents(status="open", model=model):
        incident = system.monitor_engine.get_incident(summary.incident_id)
        kinds = {entry.kind for entry in incident.timeline}
        if not kinds & REQUEST_KINDS:
            return False  # a WARN, or an ALERT whose @retrain is still on its way
        if not kinds & SETTLED_KINDS:
            return False
        waiting += 1
    return waiting > 0
