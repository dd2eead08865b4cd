"""docs/monitor-external.md runs: the driftloop server's configuration loads, its console
commands push the data, train v1 and make the keys, the service's code reports its insights and
logs its prediction to a real server, the label joins it, and the deploy receiver answers a
real signed call of the model's deploy hook (#19 part 7)."""

from __future__ import annotations

import base64
import json
import re
import secrets
import shlex
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from driftloop.cli import app
from driftloop.config import load_config
from driftloop.insights import configure_insights, shutdown_insights
from driftloop.objectstore import bundled_reviews_path
from driftloop.registry.deploy_hook import DeployHook, deploy_payload
from driftloop.system import DriftloopSystem, SystemOptions
from reliability.project import free_port
from serving.live import live_server

DOCS = Path(__file__).resolve().parents[1] / "docs" / "monitor-external.md"
MODEL = "reviews"


def block(language: str, containing: str) -> str:
    blocks: list[str] = re.findall(rf"```{language}\n(.*?)```", DOCS.read_text(), re.S)
    [found] = [b for b in blocks if containing in b]
    return found


def run_commands(config: Path) -> list[str]:
    """The driftloop side's console block, each command against ``config`` (``driftloop up``
    is the live server below); the outputs in order."""
    outputs = []
    for line in block("console", "driftloop keys create").splitlines():
        arguments = shlex.split(line.removeprefix("$ "))[1:]
        if arguments == ["up"]:
            continue
        result = CliRunner().invoke(app, [*arguments, "--config", str(config)])
        assert result.exit_code == 0, f"{line}: {result.output}"
        outputs.append(result.stdout.strip())
    return outputs


@contextmanager
def deploy_receiver(port: int, handle: Any) -> Iterator[None]:
    """The page's ``handle_deploy`` behind a plain HTTP server on ``port``."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status, answer = handle(body, dict(self.headers.items()))
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def test_the_guide_runs_from_the_first_report_to_the_deploy_hook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    monkeypatch.setenv("DEPLOY_HOOK_SECRET", secret)
    hook_port = free_port()
    server_dir, service_dir = tmp_path / "driftloop", tmp_path / "service"
    server_dir.mkdir()
    service_dir.mkdir()
    server_yaml = block("yaml", "# driftloop.yaml of the driftloop server")
    assert "127.0.0.1:8100" in server_yaml
    config_path = server_dir / "driftloop.yaml"
    config_path.write_text(
        server_yaml.replace("127.0.0.1:8100", f"127.0.0.1:{hook_port}").replace(
            "    trainer: sklearn",  # a quick training for the test; the page keeps the defaults
            "    trainer: sklearn\n    params: {c_grid: [4.0], min_df: 1}",
        )
    )
    reviews = pd.read_csv(bundled_reviews_path(), dtype=str, keep_default_na=False)
    reviews.sample(n=400, random_state=1).to_csv(server_dir / "reviews.csv", index=False)
    monkeypatch.chdir(server_dir)
    outputs = run_commands(config_path)
    insights_key, label_key = outputs[-2], outputs[-1]
    config = load_config(config_path)
    system = DriftloopSystem(config, SystemOptions())
    assert system.registry.resolve(MODEL, "production").version == 1

    with live_server(system.create_app(poll=False)) as url:
        monkeypatch.setenv("DRIFTLOOP_URL", url)
        monkeypatch.setenv("DRIFTLOOP_INSIGHTS_KEY", insights_key)
        monkeypatch.setenv("DRIFTLOOP_LABEL_KEY", label_key)
        service_config = service_dir / "driftloop.yaml"
        service_config.write_text(block("yaml", "# driftloop.yaml of your service"))
        monkeypatch.chdir(service_dir)
        configure_insights(load_config(service_config))

        def my_model_predict(text: str) -> dict[str, float]:
            return {"Food-Negative": 0.8, "Food-Positive": 0.2}

        service: dict[str, Any] = {"my_model_predict": my_model_predict}
        exec(block("python", "# your service\n"), service)  # noqa: S102 - the page's code
        answer = service["answer"]("req-0001", "the soup was cold")
        assert answer == {"label": "Food-Negative", "confidence": 0.8}
        shutdown_insights()  # flushes the SDK's batch
        exec(block("python", "# the labelling tool"), {})  # noqa: S102
        assert "1 label(s) joined a logged prediction" in capsys.readouterr().out
        service["client"].close()

        deadline = time.monotonic() + 10
        while True:
            now = time.time()
            confidence = system.reported_values(MODEL, 1, "model_confidence", now - 60, now)
            correct = system.reported_values(MODEL, 1, "prediction_correct", now - 60, now)
            if (confidence.size, correct.size) == (2, 1) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        # the SDK's report and the logged prediction's own, and the label's outcome
        assert sorted(confidence.tolist()) == [0.8, 0.8]
        assert correct.tolist() == [1.0]

    swapped: list[tuple[str, int, str]] = []
    receiver: dict[str, Any] = {
        "load_and_swap": lambda model, version, uri: swapped.append((model, version, uri))
    }
    exec(block("python", "# your service: the deploy hook"), receiver)  # noqa: S102
    deploy = config.models[MODEL].deploy
    assert deploy is not None
    version = system.registry.get_version(MODEL, 1)
    with deploy_receiver(hook_port, receiver["handle_deploy"]):
        done = DeployHook(deploy, model=MODEL).call(
            deploy_payload(
                "deploy", "job-1", version, None, timestamp=time.time(), actor="job:job-1"
            )
        )
    assert done.startswith("the deploy webhook of reviews (deploy v1): 200")
    assert swapped == [(MODEL, 1, version.artifact_uri)]
