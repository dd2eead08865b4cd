"""The DogStatsD forwarder (Datadog's own ``DogStatsd`` client) against UDP and Unix-socket
listeners that check the wire format, both on its own and fed by a running DriftloopSystem's
predictions (``dogstatsd:`` in driftloop.yaml)."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from driftloop.config import Config, DogStatsdConfig, InsightsConfig
from driftloop.errors import ConfigError
from driftloop.insights import InsightsClient, LocalTransport, open_transport
from driftloop.insights.dogstatsd import DogStatsdForwarder, ForwardingTransport
from driftloop.metrics.points import MetricPoint
from driftloop.serving.keys import Scope
from pipeline.world import MODEL, PipelineWorld

from .conftest import AppServer

# name:value|type|#tag:value,tag:value  (https://docs.datadoghq.com/developers/dogstatsd/datagram_shell/)
# (the client may append the container id field |c:... where it runs in a container)
LINE = re.compile(
    r"^[A-Za-z][A-Za-z0-9_.]*:-?[0-9.e+-]+\|(d|h|g)(\|#[\w\-:./]+(,[\w\-:./]+)*)?"
    r"(\|c:[^|]*)?$"
)
CONTAINER_FIELD = re.compile(r"\|c:[^|]*$")


class UdpAgent:
    """A datagram socket standing in for the Datadog agent's DogStatsD port: UDP on
    127.0.0.1, or a Unix socket at ``path``."""

    def __init__(self, path: Path | None = None) -> None:
        if path is None:
            self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.socket.bind(("127.0.0.1", 0))
            self.port: int = self.socket.getsockname()[1]
        else:
            self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.socket.bind(str(path))
            self.port = 0
        self.socket.settimeout(5)
        self.packets: list[bytes] = []

    def receive(self, lines: int, timeout: float = 10) -> list[str]:
        """Datagrams until ``lines`` lines have come; every line must be well formed."""
        received: list[str] = []
        deadline = time.monotonic() + timeout
        while len(received) < lines and time.monotonic() < deadline:
            try:
                packet = self.socket.recv(65535)
            except TimeoutError:
                continue
            self.packets.append(packet)
            for line in packet.decode().split("\n"):
                if not line:
                    continue
                assert LINE.match(line), f"not a DogStatsD line: {line!r}"
                received.append(CONTAINER_FIELD.sub("", line))
        return received


@pytest.fixture
def agent() -> Iterator[UdpAgent]:
    listener = UdpAgent()
    try:
        yield listener
    finally:
        listener.socket.close()


def point(name: str, value: float, **tags: str) -> MetricPoint:
    return MetricPoint(name, value, 1_700_000_000.0, tags)


def test_distribution_lines_carry_model_and_version_tags(agent: UdpAgent) -> None:
    forwarder = DogStatsdForwarder("127.0.0.1", agent.port, constant_tags=["env:test"])
    sent = forwarder.forward(
        [
            point(
                "model_confidence", 0.93, model="review-classifier", version="2", **{"class": "x"}
            ),
            point("text_length", 57, model="review-classifier", version="2"),  # not forwarded
            point("model_confidence", 0.5, model="odd|name,#x", version="1"),
        ]
    )
    assert sent == 2
    assert agent.receive(2) == [
        "driftloop.model_confidence:0.93|d|#model:review-classifier,version:2,env:test",
        "driftloop.model_confidence:0.5|d|#model:odd_name__x,version:1,env:test",
    ]
    assert forwarder.stats.lines == 2
    assert forwarder.stats.batches == 1
    forwarder.close()


def test_a_shadow_versions_points_say_so(agent: UdpAgent) -> None:
    # production's Datadog monitors must be able to leave the candidate out (!shadow:true)
    forwarder = DogStatsdForwarder.from_config(DogStatsdConfig(port=agent.port))
    forwarder.forward(
        [
            point("model_confidence", 0.9, model="m", version="2", shadow="true"),
            point("model_confidence", 0.5, model="m", version="1"),
        ]
    )
    assert agent.receive(2) == [
        "driftloop.model_confidence:0.9|d|#model:m,version:2,shadow:true",
        "driftloop.model_confidence:0.5|d|#model:m,version:1",
    ]
    forwarder.close()


def test_gauges_send_the_batch_mean_per_tag_set(agent: UdpAgent) -> None:
    forwarder = DogStatsdForwarder(
        "127.0.0.1", agent.port, metric_type="g", metrics=["model_confidence", "latency_ms"]
    )
    forwarder.forward(
        [
            point("model_confidence", 0.9, model="a", version="2"),
            point("model_confidence", 0.7, model="a", version="2"),
            point("model_confidence", 0.4, model="b", version="1"),
            point("latency_ms", 12, model="a", version="2"),
        ]
    )
    assert sorted(agent.receive(3)) == [
        "driftloop.latency_ms:12.0|g|#model:a,version:2",
        "driftloop.model_confidence:0.4|g|#model:b,version:1",
        "driftloop.model_confidence:0.8|g|#model:a,version:2",
    ]
    forwarder.close()


def test_lines_are_packed_into_datagrams_under_the_size_limit(agent: UdpAgent) -> None:
    forwarder = DogStatsdForwarder("127.0.0.1", agent.port, max_packet_bytes=512)
    points = [
        point("model_confidence", i / 1000, model="review-classifier", version="7")
        for i in range(300)
    ]
    assert forwarder.forward(points) == 300
    lines = agent.receive(300)
    assert [float(line.split(":")[1].split("|")[0]) for line in lines] == [
        i / 1000 for i in range(300)
    ]
    assert len(agent.packets) > 1
    assert max(len(packet) for packet in agent.packets) <= 512
    forwarder.close()


def test_bad_settings_are_refused_and_a_missing_agent_loses_no_insights(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="start with a letter"):
        DogStatsdForwarder(prefix="1bad.")
    with pytest.raises(ConfigError, match="metric_type"):
        DogStatsdForwarder(metric_type="c")
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nobody listens: the kernel answers port unreachable
    config = Config(
        store=f"sqlite:///{tmp_path / 'd.db'}",
        base_dir=tmp_path,
        insights=InsightsConfig(outbox="outbox"),
        dogstatsd=DogStatsdConfig(enabled=True, port=port),
    )
    transport = open_transport(config)
    assert isinstance(transport, ForwardingTransport)
    assert isinstance(transport.inner, LocalTransport)
    with InsightsClient.from_config(config, transport=transport) as client:
        for _ in range(3):
            client.report({"model_confidence": 0.9}, {"model": "m", "version": "1"})
            assert client.flush()
        assert client.stats.published == 3
        assert client.stats.spooled == 0
    transport.close()


def test_a_running_system_forwards_prediction_confidence(agent: UdpAgent, tmp_path: Path) -> None:
    world = PipelineWorld.create(
        tmp_path,
        extra={"dogstatsd": {"enabled": True, "port": agent.port, "constant_tags": ["env:ci"]}},
    )
    world.train_production()
    system = world.system
    key = system.api_keys.create(Scope.PREDICT).key
    with AppServer(system.create_app(poll=False)) as app:
        answer = httpx.post(
            f"{app.url}/v1/models/{MODEL}/predict",
            json={"texts": ["great fit, true to size", "the plot drags"]},
            headers={"Authorization": f"Bearer {key}"},
        )
        answer.raise_for_status()
        assert system.insights.flush()
        lines = agent.receive(2)
    predictions = answer.json()["predictions"]
    assert lines == [
        f"driftloop.model_confidence:{float(format(p['confidence'], '.10g'))!r}|d|"
        f"#model:{MODEL},version:1,env:ci"
        for p in predictions
    ]


def test_a_unix_socket_and_the_datadog_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``DD_DOGSTATSD_URL=unix://...`` reaches an agent on a Unix socket, and ``DD_ENV``,
    ``DD_SERVICE`` and ``DD_VERSION`` tag every line (Datadog's unified service tagging)."""
    agent = UdpAgent(tmp_path / "dsd.socket")
    monkeypatch.setenv("DD_DOGSTATSD_URL", f"unix://{tmp_path / 'dsd.socket'}")
    monkeypatch.setenv("DD_ENV", "prod")
    monkeypatch.setenv("DD_SERVICE", "reviews-api")
    monkeypatch.setenv("DD_VERSION", "1.4")
    try:
        forwarder = DogStatsdForwarder.from_config(DogStatsdConfig(enabled=True))
        forwarder.forward([point("model_confidence", 0.75, model="m", version="3")])
        [line] = agent.receive(1)
        name_value, kind, tags = line.split("|")
        assert (name_value, kind) == ("driftloop.model_confidence:0.75", "d")
        assert tags.removeprefix("#").split(",")[:2] == ["model:m", "version:3"]
        assert {"env:prod", "service:reviews-api", "version:1.4"} <= set(tags[1:].split(","))
        forwarder.close()
    finally:
        agent.socket.close()


def test_a_configured_socket_path_is_used(tmp_path: Path) -> None:
    agent = UdpAgent(tmp_path / "agent.socket")
    try:
        forwarder = DogStatsdForwarder.from_config(
            DogStatsdConfig(enabled=True, socket_path=str(tmp_path / "agent.socket"))
        )
        forwarder.forward([point("model_confidence", 0.5, model="m", version="1")])
        assert agent.receive(1) == ["driftloop.model_confidence:0.5|d|#model:m,version:1"]
        forwarder.close()
    finally:
        agent.socket.close()
