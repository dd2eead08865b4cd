"""Secrets (#21 part 5): the secrets file is a ``.env`` file parsed by python-dotenv, and
``${NAME}`` falls back to the file ``$NAME_FILE`` names (Kubernetes and Docker secrets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from driftloop.config import SlackNotifierConfig, load_config, parse_config
from driftloop.errors import ConfigError

PROJECT = """
notifiers:
  slack-x: {type: slack, webhook_url: "${SLACK_URL}"}
"""


def webhook_url(text: str, environ: dict[str, str], tmp_path: Path) -> str:
    config_file = tmp_path / "driftloop.yaml"
    config_file.write_text(text)
    slack = load_config(config_file, environ=environ).notifiers["slack-x"]
    assert isinstance(slack, SlackNotifierConfig)
    return slack.webhook_url


def test_the_secrets_file_is_read_as_a_dotenv_file(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.env"
    secrets.write_text(
        '# a comment\nexport OTHER="a # not a comment"\n'
        'SLACK_URL="https://hooks.example/with spaces#and-hash"  # trailing\n'
    )
    url = webhook_url(PROJECT, {"DRIFTLOOP_SECRETS_FILE": str(secrets)}, tmp_path)
    assert url == "https://hooks.example/with spaces#and-hash"


def test_a_missing_secrets_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"DRIFTLOOP_SECRETS_FILE: .*no such file"):
        webhook_url(PROJECT, {"DRIFTLOOP_SECRETS_FILE": str(tmp_path / "absent.env")}, tmp_path)


def test_a_file_variable_holds_the_secret(tmp_path: Path) -> None:
    mounted = tmp_path / "slack-url"
    mounted.write_text("https://hooks.example/mounted\n")
    assert webhook_url(PROJECT, {"SLACK_URL_FILE": str(mounted)}, tmp_path) == (
        "https://hooks.example/mounted"
    )
    # the variable itself wins over its _FILE
    assert (
        webhook_url(
            PROJECT, {"SLACK_URL": "https://direct", "SLACK_URL_FILE": str(mounted)}, tmp_path
        )
        == "https://direct"
    )


def test_an_unreadable_file_variable_names_it() -> None:
    with pytest.raises(ConfigError, match=r"webhook_url: SLACK_URL_FILE: cannot read /nonexistent"):
        parse_config(PROJECT, source="f.yaml", environ={"SLACK_URL_FILE": "/nonexistent"})
