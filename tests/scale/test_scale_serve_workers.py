"""``driftloop serve --workers 2`` as a real subprocess on one SQLite store and registry:
predictions, a deploy (registry alias move) reaching every worker, and ``/metrics`` merged over
the workers (Prometheus multiprocess mode)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from driftloop.serving.keys import Scope
from pipeline.world import MODEL, PipelineWorld

TEXTS = ["great fit, true to size", "the plot drags in the middle"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def metric(exposition: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels``."""
    total = 0.0
    for line in exposition.splitlines():
        match = re.match(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", line)
        if not match:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


@pytest.fixture
def world(tmp_path: Path) -> PipelineWorld:
    world = PipelineWorld.create(tmp_path, extra={"serving": {"registry_poll_interval": "0.5s"}})
    world.train_production()  # v1, deployed
    return world


@pytest.fixture
def server(world: PipelineWorld, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "driftloop"), "serve", "--workers", "2",
         "--port", str(port), "--config", str(tmp_path / "driftloop.yaml")],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"driftloop serve did not get ready:\n"
                            f"{(tmp_path / 'serve.log').read_text()[-3000:]}")
            time.sleep(0.3)
        # one worker answering is not both: on a busy machine the second may still be starting,
        # and would then load the later version at start-up instead of swapping to it. uvicorn
        # logs this line per worker once its lifespan (which loads the models) is done.
        while (tmp_path / "serve.log").read_text().count("Application startup complete") < 2:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the second worker did not start:\n"
                            f"{(tmp_path / 'serve.log').read_text()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def predict(url: str, key: str) -> httpx.Response:
    # a new connection each time, so the kernel spreads requests over both workers
    answer = httpx.post(f"{url}/v1/models/{MODEL}/predict", json={"texts": TEXTS},
                        headers={"Authorization": f"Bearer {key}", "Connection": "close"},
                        timeout=10)
    answer.raise_for_status()
    return answer


@pytest.mark.slow
def test_two_workers_serve_take_a_deploy_and_merge_their_metrics(
    world: PipelineWorld, server: str, tmp_path: Path
) -> None:
    key = world.system.api_keys.create(Scope.PREDICT, name="load").key
    sent = 0
    for _ in range(20):
        answer = predict(server, key)
        sent += len(TEXTS)
        assert answer.headers["x-driftloop-model-version"] == "1"
        assert [p["class"] for p in answer.json()["predictions"]]

    # a deploy made elsewhere (registry alias move) reaches every worker through its poller
    v2 = world.train_production(world.snapshots.drifted)
    assert v2.version == 2
    deadline = time.monotonic() + 60
    exposition = ""
    while time.monotonic() < deadline:
        exposition = httpx.get(f"{server}/metrics", timeout=5).text
        if metric(exposition, "driftloop_model_swaps_total", model=MODEL) >= 2:
            break
        time.sleep(0.3)
    # one swap per worker, each counted in its own process's file, summed by /metrics
    assert metric(exposition, "driftloop_model_swaps_total", model=MODEL) == 2
    counter_files = list((tmp_path / ".driftloop" / "prometheus").glob("counter_*.db"))
    assert len({path.stem.split("_")[-1] for path in counter_files}) == 2
    versions = {predict(server, key).headers["x-driftloop-model-version"] for _ in range(20)}
    sent += 20 * len(TEXTS)
    assert versions == {"2"}

    # any worker's /metrics covers all of them
    exposition = httpx.get(f"{server}/metrics", timeout=5).text
    assert metric(exposition, "driftloop_predictions_total", model=MODEL) == sent
    assert metric(exposition, "driftloop_model_confidence_count", model=MODEL) == sent
    assert metric(exposition, "driftloop_model_confidence_count", model=MODEL,
                  version="2") == 20 * len(TEXTS)
    assert metric(exposition, "driftloop_http_requests_total", status="200",
                  route="/v1/models/{name}/predict") == 40
