"""The loop's commands: up, worker, retrain, jobs, status."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

if TYPE_CHECKING:
    from driftloop.pipeline.queue import JobQueue

from rich.table import Table

from driftloop.cli.app import (
    ConfigOption,
    JsonOption,
    LogFormatOption,
    LogLevelOption,
    app,
    console,
    load,
    load_for_service,
    print_json,
    sub_app,
)
from driftloop.errors import NotFoundError
from driftloop.timestamps import epoch_seconds, text_utc


def _when(moment: float | str | None) -> str:
    return text_utc(epoch_seconds(moment) if isinstance(moment, str) else moment)


@app.command()
def up(
    host: str | None = typer.Option(None, "--host", help="Interface to bind (serving.host)."),
    port: int | None = typer.Option(None, "--port", help="Port to listen on (serving.port)."),
    monitor_interval: float = typer.Option(
        5.0, "--monitor-interval", help="Seconds between monitor evaluations."
    ),
    no_worker: bool = typer.Option(
        False, "--no-worker", help="Do not run retrain jobs in this process."
    ),
    log_level: str | None = LogLevelOption,
    log_format: str | None = LogFormatOption,
    config_path: Path | None = ConfigOption,
) -> None:
    """Run the whole loop in one process: API, dashboard, monitors, notifications, retrains."""
    import uvicorn

    from driftloop.cli.process import ensure_port_free, follow_port
    from driftloop.serving.limits import uvicorn_options
    from driftloop.system import DriftloopSystem, SystemOptions

    config = load_for_service(config_path, log_level, log_format)
    bind_host = host or config.serving.host
    bind_port = config.serving.port if port is None else port
    ensure_port_free(bind_host, bind_port)
    config = follow_port(config, bind_host, bind_port)
    system = DriftloopSystem(config, SystemOptions(monitor_interval=monitor_interval))
    application = system.create_app()
    console.print(
        f"driftloop up at [bold]http://{bind_host}:{bind_port}[/]: dashboard /, "
        f"API docs /docs; monitors every {monitor_interval:g}s"
        + ("" if no_worker else "; retrain worker running")
    )
    system.start_background(worker=not no_worker)
    try:
        uvicorn.run(
            application,
            host=bind_host,
            port=bind_port,
            log_level="info",
            **uvicorn_options(config.serving),
        )
    finally:
        system.stop_background()


@app.command()
def worker(
    poll_interval: float = typer.Option(
        1.0, "--poll-interval", help="Seconds between looks at the queue."
    ),
    once: bool = typer.Option(False, "--once", help="Run at most one job, then exit."),
    log_level: str | None = LogLevelOption,
    log_format: str | None = LogFormatOption,
    config_path: Path | None = ConfigOption,
) -> None:
    """Run retrain jobs from the queue (resumes jobs whose worker died)."""
    from driftloop.system import DriftloopSystem, SystemOptions

    config = load_for_service(config_path, log_level, log_format)
    system = DriftloopSystem(config, SystemOptions(worker_poll_interval=poll_interval))
    if once:
        job = system.worker.run_once()
        console.print(
            "no job waiting" if job is None else f"job {job.job_id[:8]} {job.state.value}"
        )
        return
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    console.print(
        f"worker {system.process_id} waiting for retrain jobs (leading the worker "
        "role, or waiting for its lease while another process leads it)"
    )
    # only jobs: monitors and notifications run in 'driftloop up'
    system.start_background(worker=True, monitors=False, insights=False)
    try:
        stop.wait()
    finally:
        system.stop_background()


@app.command()
def retrain(
    model: str = typer.Argument(..., help="Model to retrain (a key under models:)."),
    reason: str = typer.Option("manual", "--reason", help="Why, for the record."),
    wait: bool = typer.Option(False, "--wait", help="Run the job here and wait for it."),
    config_path: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Queue a retrain of a model now (a worker or 'driftloop up' runs it)."""
    from driftloop.pipeline.api import job_detail
    from driftloop.system import DriftloopSystem

    config = load(config_path)
    if model not in config.models:
        raise NotFoundError(f"model {model!r} is not configured; known: {sorted(config.models)}")
    system = DriftloopSystem(config)
    job_id = system.enqueue_retrain_manual(model, reason)
    if wait:
        with console.status(f"running retrain job {job_id[:8]}"):
            claimed = system.queue.claim(system.worker.name, job_id=job_id)
            if claimed is None:
                console.print(f"job {job_id[:8]} is held by another worker; not waiting")
            else:
                system.pipeline.run(claimed, system.worker.name)
    job = system.queue.get(job_id)
    if as_json:
        print_json(job_detail(system.queue, job_id))
        return
    console.print(f"retrain job [bold]{job_id}[/] for {model}: {job.state.value}")


jobs_app = sub_app("jobs", "List, show and cancel retrain jobs.")


def _queue(config_path: Path | None) -> JobQueue:
    from driftloop.database import open_database
    from driftloop.pipeline.queue import JobQueue

    config = load(config_path)
    return JobQueue(
        open_database(config.store, base_dir=config.base_dir), cooldown=config.pipeline.cooldown
    )


@jobs_app.command("ls")
def jobs_ls(
    model: str | None = typer.Option(None, "--model", help="Only this model's jobs."),
    limit: int = typer.Option(20, "--limit", min=1, help="How many, newest first."),
    config_path: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """List retrain jobs, newest first."""
    jobs = _queue(config_path).list(model=model, limit=limit)
    if as_json:
        print_json([job.to_dict() for job in jobs])
        return
    table = Table("job", "model", "state", "incident", "attempt", "versions", "created", "alerts")
    for job in jobs:
        versions = f"v{job.previous_version or '-'} → v{job.candidate_version or '-'}"
        table.add_row(
            job.job_id[:12],
            job.model,
            job.state.value,
            job.incident_id or "",
            str(job.attempt),
            versions,
            _when(job.created_at),
            str(job.attached_alerts),
        )
    console.print(table)


@jobs_app.command("show")
def jobs_show(
    job_id: str = typer.Argument(..., help="Job id or a unique prefix of it."),
    config_path: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Show one job with its steps and their logs."""
    from driftloop.pipeline.api import job_detail

    detail = job_detail(_queue(config_path), job_id)
    if as_json:
        print_json(detail)
        return
    console.print(
        f"[bold]job {detail['job_id']}[/] {detail['model']}: {detail['state']}"
        + (f" ({escape(str(detail['error']))})" if detail["error"] else "")
    )
    console.print(
        f"  trigger {detail['trigger']}, attempt {detail['attempt']}: {detail['reason']}",
        highlight=False,
        markup=False,
    )
    for step in detail["steps"]:
        took = (
            ""
            if step["finished_at"] is None
            else f" {epoch_seconds(step['finished_at']) - epoch_seconds(step['started_at']):.1f}s"
        )
        console.print(
            f"  {_when(step['started_at'])} {step['step']:<14} {step['outcome'] or 'running'}{took}"
        )
        for line in (step["log"] or "").splitlines():
            console.print(f"      {line}", highlight=False, markup=False)


@jobs_app.command("cancel")
def jobs_cancel(
    job_id: str = typer.Argument(..., help="Job id or a unique prefix of it."),
    config_path: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Cancel a queued job, or stop a running one at its next step."""
    queue = _queue(config_path)
    job = queue.request_cancel(queue.find(job_id).job_id)
    if as_json:
        print_json(job.to_dict())
        return
    state = "cancel requested" if job.cancel_requested else job.state.value
    console.print(f"job {job.job_id[:12]}: {state}")


@app.command()
def status(config_path: Path | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """One screen: what is serving, monitor states, open incidents, active jobs."""
    from driftloop.cli.monitors import StoredMonitors
    from driftloop.pipeline.queue import JobQueue
    from driftloop.registry.model_registry import ModelRegistry

    config = load(config_path)  # the store and registry alone: no server, no notifiers
    registry = ModelRegistry.from_config(config)
    stored = StoredMonitors(config)
    known = set(registry.list_models())
    models = [
        {"model": name, "aliases": registry.aliases(name) if name in known else {}}
        for name in sorted(config.models)
    ]
    monitors = [s.to_dict() for s in stored.status()]
    incidents = [i.to_dict() for i in stored.incidents.list_incidents(status="open")]
    queue = JobQueue(stored.database, cooldown=config.pipeline.cooldown)
    jobs = [j.to_dict() for j in queue.list(limit=10) if not j.state.finished]
    if as_json:
        print_json(
            {
                "models": models,
                "monitors": monitors,
                "open_incidents": incidents,
                "active_jobs": jobs,
            }
        )
        return
    for name in sorted(config.models):
        shown = (
            ", ".join(f"{k}=v{v}" for k, v in sorted(registry.aliases(name).items()))
            if name in known
            else ""
        )
        console.print(f"[bold]{name}[/]: {shown or 'no versions yet'}")
    for monitor in monitors:
        groups = ", ".join(f"{g['state']}" for g in monitor.get("groups", [])) or "no data yet"
        console.print(f"  monitor {monitor['name']}: {groups}")
    console.print(f"{len(incidents)} open incident(s), {len(jobs)} active job(s)")
