"""The plug-in registry: a third-party package found through its real entry points, for every
family; built-ins through the same lookup; unknown names and broken plug-ins answered clearly.

The package is a real distribution: a module and a ``.dist-info`` with its ``entry_points.txt``
in a directory put on ``sys.path``, which ``importlib.metadata`` finds the way it finds a
pip-installed one.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from driftloop.backends import PluginFamily, installed_plugins
from driftloop.config import (
    DETECTOR_ALGORITHMS,
    Config,
    DetectorConfig,
    ModelConfig,
    PluginNotifierConfig,
    parse_config,
)
from driftloop.database import Database
from driftloop.database.core import STORES
from driftloop.drift import SelfReferencedDetector, build_detector
from driftloop.drift.factory import DETECTORS
from driftloop.errors import ConfigError, MissingExtraError, UnknownBackendError
from driftloop.insights.transports import TRANSPORTS, open_transport
from driftloop.notify.plugins import NOTIFIERS
from driftloop.notify.router import NotificationRouter
from driftloop.objectstore.storage import STORAGES, open_storage
from driftloop.predictors import PREDICTORS, load_predictor
from driftloop.testing.transports import MemoryTransport
from driftloop.trainers.registry import TRAINERS, get_trainer, known_trainers, trainer_class
from driftloop.trainers.sklearn import SklearnTrainer

PLUGIN_MODULE = "driftloop_example_plugin"

PLUGIN_SOURCE = '''
from __future__ import annotations

from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import sqlalchemy as sa

from driftloop.drift.base import DriftDetector
from driftloop.notify.base import DeliveryResult, Notifier
from driftloop.predictors import Predictor
from driftloop.objectstore.storage import ObjectStorage
from driftloop.testing.transports import MemoryTransport
from driftloop.trainers.base import Trainer


class EchoTrainer(Trainer):
    name = "echo"

    def __init__(self, model_config: Any) -> None:
        self.model_config = model_config

    def fit(self, data: Any, *, progress: Any = None) -> Any:
        raise NotImplementedError


class ConstantPredictor(Predictor):
    format = "constant"

    def logits(self, texts):
        return np.tile(np.arange(len(self.labels), dtype=np.float64), (len(texts), 1))

    def save_files(self, directory: Path) -> dict[str, Any]:
        return {"constant": True}

    @classmethod
    def load_files(cls, directory: Path, manifest: dict[str, Any]) -> ConstantPredictor:
        assert manifest["constant"] is True
        return cls(manifest["labels"], manifest["temperature"])


class TeamsNotifier(Notifier):
    def __init__(self, config: Any, context: Any) -> None:
        self.name = context.name
        self.url = config.model_extra["url"]

    def send(self, notification: Any) -> DeliveryResult:
        return DeliveryResult.delivered()


def memory_engine(url: str, base_dir: Any = None) -> sa.Engine:
    return sa.create_engine("sqlite://")


def memory_storage(url: str, base_dir: Any = None) -> ObjectStorage:
    return ObjectStorage(fsspec.filesystem("memory"), "/example-plugin", url)


def list_transport(url: str, *, config: Any, store: Any) -> MemoryTransport:
    return MemoryTransport()


class AboveLimitDetector(DriftDetector):
    """Drift as soon as a value passes the configured ``min_shift``."""

    def __init__(self, config: Any, reference: Any, metric: str) -> None:
        super().__init__()
        self.limit = config.min_shift
        self.metric = metric
        self.last = 0.0

    @property
    def statistic(self) -> float:
        return self.last

    @property
    def threshold(self) -> float:
        return self.limit

    def _step(self, x: float) -> tuple[bool, bool]:
        self.last = x
        return x > self.limit, False

    def _restart(self) -> None:
        self.last = 0.0
'''

ENTRY_POINTS = {
    "driftloop.trainers": {"echo": "EchoTrainer", "sklearn": "EchoTrainer"},
    "driftloop.predictors": {"constant": "ConstantPredictor"},
    "driftloop.notifiers": {"teams": "TeamsNotifier"},
    "driftloop.stores": {"memstore": "memory_engine"},
    "driftloop.storages": {"memfs": "memory_storage"},
    "driftloop.transports": {"listq": "list_transport"},
    "driftloop.detectors": {"above_limit": "AboveLimitDetector"},
    "driftloop.brokens": {"gone": "no_such_attribute", "missing": "x"},
}


@pytest.fixture
def plugin_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An installed distribution ``driftloop-example-plugin`` declaring one plug-in per
    family (and, in ``driftloop.brokens``, two that cannot load)."""
    site = tmp_path / "site-packages"
    site.mkdir()
    (site / f"{PLUGIN_MODULE}.py").write_text(textwrap.dedent(PLUGIN_SOURCE))
    dist_info = site / "driftloop_example_plugin-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: driftloop-example-plugin\nVersion: 0.1\n"
    )
    sections = []
    for group, names in ENTRY_POINTS.items():
        lines = [f"{name} = {PLUGIN_MODULE}:{attribute}" for name, attribute in names.items()]
        sections.append(f"[{group}]\n" + "\n".join(lines))
    sections[-1] = sections[-1].replace(f"missing = {PLUGIN_MODULE}:x", "missing = nowhere_xyz:x")
    (dist_info / "entry_points.txt").write_text("\n\n".join(sections) + "\n")
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop(PLUGIN_MODULE, None)


FAMILIES: list[tuple[PluginFamily[object], str]] = [
    (TRAINERS, "echo"),  # type: ignore[list-item]
    (PREDICTORS, "constant"),  # type: ignore[list-item]
    (NOTIFIERS, "teams"),  # type: ignore[list-item]
    (STORES, "memstore"),  # type: ignore[list-item]
    (STORAGES, "memfs"),  # type: ignore[list-item]
    (TRANSPORTS, "listq"),  # type: ignore[list-item]
    (DETECTORS, "above_limit"),  # type: ignore[list-item]
]


@pytest.mark.parametrize(("family", "name"), FAMILIES, ids=lambda x: getattr(x, "group", x))
def test_each_family_finds_an_installed_plugin_by_its_entry_point(
    plugin_package: Path, family: PluginFamily[object], name: str
) -> None:
    assert name in family.known_names()
    assert name not in family.builtin_names()
    loaded = family.load(name)
    assert getattr(loaded, "__module__", "") == PLUGIN_MODULE


def test_without_the_package_the_names_are_unknown() -> None:
    for family, name in FAMILIES:
        assert name not in family.known_names()
        with pytest.raises(UnknownBackendError, match=rf"unknown {family.family} .*{name!r}"):
            family.load(name)


def test_an_unknown_name_lists_every_known_one_and_how_to_add_one(plugin_package: Path) -> None:
    with pytest.raises(UnknownBackendError) as caught:
        get_trainer("xgboost", ModelConfig(trainer="xgboost"))
    message = str(caught.value)
    assert message.startswith(
        "unknown trainer name 'xgboost'; known: command, echo, "
        "github_dispatch, notebook, sklearn, transformers;"
    )
    assert "pip install PACKAGE" in message
    assert "entry point group 'driftloop.trainers'" in message
    with pytest.raises(
        UnknownBackendError,
        match=(
            r"unknown store scheme 'mysql' in 'mysql://h/db'; known schemes: memstore://, "
            r"postgresql://, postgresql\+psycopg://, sqlite://; .*'driftloop.stores'"
        ),
    ):
        Database("mysql://h/db")


def test_builtins_go_through_the_same_lookup_and_win_over_a_plugin_of_the_same_name(
    plugin_package: Path,
) -> None:
    assert "sklearn" in installed_plugins("driftloop.trainers")  # the package declares one too
    assert trainer_class("sklearn") is SklearnTrainer
    assert TRAINERS.load("sklearn") is SklearnTrainer
    assert known_trainers().count("sklearn") == 1


def test_a_broken_plugin_says_which_entry_point_failed(plugin_package: Path) -> None:
    broken: PluginFamily[object] = PluginFamily("broken")
    assert broken.known_names() == ["gone", "missing"]
    with pytest.raises(
        MissingExtraError,
        match=(
            r"the broken plug-in 'missing' \(nowhere_xyz:x, entry point group "
            r"'driftloop.brokens'\) cannot be imported"
        ),
    ):
        broken.load("missing")
    with pytest.raises(ConfigError, match="points at driftloop_example_plugin:no_such_attribute"):
        broken.load("gone")


def test_plugins_are_used_where_the_builtins_are(plugin_package: Path, tmp_path: Path) -> None:
    """Each family's plug-in through the code path the built-ins take."""
    trainer = get_trainer("echo", ModelConfig(trainer="echo"))
    assert type(trainer).__name__ == "EchoTrainer"

    predictor_class = PREDICTORS.load("constant")
    predictor_class(["neg", "pos"], 2.0).save(tmp_path / "model")
    loaded = load_predictor(tmp_path / "model")
    assert type(loaded).__name__ == "ConstantPredictor"
    assert loaded.predict_proba(["a", "b"]).shape == (2, 2)

    database = Database("memstore://anything")
    assert database.dialect == "sqlite"
    database.dispose()
    storage = open_storage("memfs://bucket")
    storage.put_bytes("k", b"v")
    assert storage.get_bytes("k") == b"v"
    assert isinstance(open_transport(Config(transport="listq://"), store=None), MemoryTransport)

    config = parse_config(
        "monitors:\n  - name: d\n    type: drift\n    metric: latency\n"
        "    detector: {algorithm: above_limit, min_shift: 2.0}\n",
        environ={},
    )
    detector_config = config.monitors[0].detector
    assert detector_config is not None
    detector = build_detector(detector_config, None, metric="latency")
    assert type(detector).__name__ == "AboveLimitDetector"
    detector.update(1.0)
    assert not detector.drift_detected
    detector.update(3.0)
    assert detector.drift_detected


def test_a_plugin_notifier_is_configured_and_built_by_the_router(
    plugin_package: Path, tmp_path: Path
) -> None:
    config = parse_config(
        "notifiers:\n  team:\n    type: teams\n    url: https://teams.example.com/hook\n"
        "monitors:\n  - name: low\n    below: {warning: 0.5}\n    message: 'low @team'\n",
        environ={},
    )
    entry = config.notifiers["team"]
    assert isinstance(entry, PluginNotifierConfig)
    assert entry.model_extra == {"url": "https://teams.example.com/hook"}
    database = Database(f"sqlite:///{tmp_path / 'store.db'}")
    database.migrate()
    router = NotificationRouter(config, database)
    notifier = router.notifier("team")
    assert type(notifier).__name__ == "TeamsNotifier"
    assert vars(notifier)["url"] == "https://teams.example.com/hook"
    assert notifier.name == "team"
    database.dispose()


def test_an_unknown_notifier_type_is_refused_when_the_config_is_read() -> None:
    with pytest.raises(
        ConfigError,
        match=(
            r"notifiers.team.type: unknown notifier type 'teams'; known: github_dispatch, jira, "
            r"log, retrain, slack, webhook; .*entry point group 'driftloop.notifiers'"
        ),
    ):
        parse_config("notifiers:\n  team:\n    type: teams\n    url: https://x\n", environ={})


def test_every_builtin_detector_algorithm_the_config_accepts_is_registered() -> None:
    assert DETECTORS.builtin_names() == sorted(DETECTOR_ALGORITHMS)
    built_in = build_detector(DetectorConfig(algorithm="cusum"), None)  # the same lookup
    assert isinstance(built_in, SelfReferencedDetector)
    with pytest.raises(
        ValidationError,
        match=(
            r"unknown detector algorithm 'adwin'; known: chi_square, cusum, cusum_shape, ks, "
            r"page_hinkley, psi, shape; .*'driftloop.detectors'"
        ),
    ):
        DetectorConfig(algorithm="adwin")
