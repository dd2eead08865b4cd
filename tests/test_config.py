"""Configuration: defaults, substitution, overrides and every rejected case."""

from __future__ import annotations

from pathlib import Path

import pytest

from driftloop.config import (
    Config,
    SlackNotifierConfig,
    Threshold,
    config_keys,
    load_config,
    parse_config,
    parse_duration,
)
from driftloop.errors import ConfigError, ConflictError
from driftloop.messages import mentioned_handles
from driftloop.project import default_config_text, init_project

MONITOR = """
monitors:
  - name: confidence
    metric: model_confidence
    window: 5m
    below: {warning: 0.8, critical: 0.7}
    message: "{{#is_alert}}@slack-x{{/is_alert}}"
notifiers:
  slack-x: {type: slack, webhook_url: "${SLACK_URL}"}
"""


def test_default_template_is_valid_as_is(tmp_path: Path) -> None:
    path = init_project(tmp_path)
    config = load_config(path, environ={})
    assert config.store.startswith("sqlite:///")
    assert config.storage.startswith("file://")
    assert config.transport == "local://"
    assert "review-classifier" in config.models
    assert config.monitors[0].name == "review-classifier confidence"
    assert config.base_dir == tmp_path.resolve()


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    init_project(tmp_path)
    with pytest.raises(ConflictError, match="already exists"):
        init_project(tmp_path)
    assert init_project(tmp_path, force=True).read_text() == default_config_text()


def test_env_substitution_and_default() -> None:
    text = 'store: "${DB:-sqlite:///x.db}"\n' + MONITOR
    config = parse_config(text, environ={"SLACK_URL": "https://hooks.example/T1"})
    assert config.store == "sqlite:///x.db"
    slack = config.notifiers["slack-x"]
    assert isinstance(slack, SlackNotifierConfig)
    assert slack.webhook_url == "https://hooks.example/T1"


def test_missing_secret_names_file_key_and_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(MONITOR, source="proj/driftloop.yaml", environ={})
    message = str(caught.value)
    assert "proj/driftloop.yaml" in message
    assert "notifiers.slack-x.webhook_url" in message
    assert "SLACK_URL" in message


def test_secrets_file(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.env"
    secrets.write_text("# secrets\nSLACK_URL='https://hooks.example/from-file'\n")
    config_file = tmp_path / "driftloop.yaml"
    config_file.write_text(MONITOR)
    config = load_config(config_file, environ={"DRIFTLOOP_SECRETS_FILE": str(secrets)})
    slack = config.notifiers["slack-x"]
    assert isinstance(slack, SlackNotifierConfig)
    assert slack.webhook_url == "https://hooks.example/from-file"


def test_unknown_key_is_rejected_with_its_path() -> None:
    with pytest.raises(ConfigError, match=r"serving\.prot: unknown key"):
        parse_config("serving: {prot: 9000}", source="f.yaml", environ={})


def test_wrong_type_names_expectation() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("serving: {port: eighty}", source="f.yaml", environ={})
    assert "serving.port" in str(caught.value)
    assert "integer" in str(caught.value)
    assert "f.yaml" in str(caught.value)


def test_critical_above_warning_for_below_monitor_is_impossible() -> None:
    text = MONITOR.replace("{warning: 0.8, critical: 0.7}", "{warning: 0.7, critical: 0.8}")
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="f.yaml", environ={"SLACK_URL": "u"})
    assert "monitors.0.below" in str(caught.value) or "monitors.0" in str(caught.value)
    assert "critical (0.8) must not be above warning (0.7)" in str(caught.value)


def test_recovery_threshold_on_wrong_side_is_rejected() -> None:
    text = MONITOR.replace(
        "{warning: 0.8, critical: 0.7}", "{warning: 0.8, critical: 0.7, warning_recovery: 0.75}"
    )
    with pytest.raises(ConfigError, match="warning_recovery"):
        parse_config(text, environ={"SLACK_URL": "u"})


def test_unknown_mention_is_rejected() -> None:
    text = MONITOR.replace("@slack-x", "@slack-typo")
    with pytest.raises(ConfigError, match="@slack-typo"):
        parse_config(text, environ={"SLACK_URL": "u"})


def test_invalid_yaml_and_non_mapping() -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_config("store: [unclosed", environ={})
    with pytest.raises(ConfigError, match="mapping"):
        parse_config("- a\n- b", environ={})


def test_bad_duration_and_bad_model_name() -> None:
    with pytest.raises(ConfigError, match="duration"):
        parse_config(MONITOR.replace("5m", "five minutes"), environ={"SLACK_URL": "u"})
    with pytest.raises(ConfigError, match="model name"):
        parse_config("models: {'../etc': {}}", environ={})


def test_environment_overrides() -> None:
    config = parse_config(
        "serving: {port: 8000}",
        environ={
            "DRIFTLOOP_SERVING__PORT": "9123",
            "DRIFTLOOP_STORE": "postgresql+psycopg://u@h/db",
        },
    )
    assert config.serving.port == 9123
    assert config.store == "postgresql+psycopg://u@h/db"


def test_override_is_validated_too() -> None:
    with pytest.raises(ConfigError, match=r"serving\.port"):
        parse_config("", environ={"DRIFTLOOP_SERVING__PORT": "not-a-port"})


def test_relative_thresholds() -> None:
    text = MONITOR.replace(
        "{warning: 0.8, critical: 0.7}",
        '{warning: "reference - 0.05", critical: "reference - 0.1"}',
    )
    config = parse_config(text, environ={"SLACK_URL": "u"})
    below = config.monitors[0].below
    assert below is not None
    assert below.warning is not None
    assert below.warning == Threshold(value=-0.05, relative=True)
    assert below.warning.resolve(0.9) == pytest.approx(0.85)
    assert below.warning.resolve(None) is None
    with pytest.raises(ConfigError, match="reference"):
        parse_config(text.replace("reference - 0.05", "ref minus 5"), environ={"SLACK_URL": "u"})


def test_durations() -> None:
    assert parse_duration("5m") == 300
    assert parse_duration("250ms") == 0.25
    assert parse_duration(12) == 12
    with pytest.raises(ValueError, match="duration"):
        parse_duration("-3s")


def test_mentions() -> None:
    assert mentioned_handles("hi @a and @b-c. mail x@y.z @a") == ["a", "b-c"]


def test_config_keys_cover_nested_models() -> None:
    keys = config_keys()
    assert "serving.port" in keys
    assert "monitors[].below.warning" in keys
    assert "notifiers.*.webhook_url" in keys
    assert "base_dir" not in keys
    assert Config().serving.port == 8000


def test_unrelated_driftloop_variables_are_not_overrides() -> None:
    config = parse_config(
        "",
        environ={
            "DRIFTLOOP_SERVICES_DIR": "/tmp/x",
            "DRIFTLOOP_TEST_POSTGRES_URL": "postgresql://h/db",
            "DRIFTLOOP_API_KEY": "k",
        },
    )
    assert config.store.startswith("sqlite")


def test_notifier_error_path_has_no_discriminator() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("notifiers: {s: {type: slack}}", environ={})
    assert "notifiers.s.webhook_url" in str(caught.value)


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("verify_baseline", "same live requests"),
        ("verify_confidence_tolerance", "verify_tolerance"),
    ],
)
def test_a_removed_pipeline_key_says_what_replaced_it(key: str, hint: str) -> None:
    with pytest.raises(ConfigError, match=hint):
        parse_config(f"pipeline: {{{key}: 1}}", environ={})
