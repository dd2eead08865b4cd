"""Secrets never reach the CLI's output (#22 part 7): every command that prints the config (the
store, storage and transport URLs) masks the passwords and tokens in them, in text and under
``--json``, and so do error messages; a config error does not echo the secret it refuses; and
whatever a command prints passes through the config's secrets (webhook URLs, tokens, signing
secrets) on its way out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner, Result

from driftloop.cli import app
from driftloop.cli.app import console, err_console, load, print_json, report_error

STORE_PASSWORD = "store-pass-4b1f"
KAFKA_PASSWORD = "kafka-pass-77c2"
STORAGE_SECRET = "storage-secret-9e0a"
WEBHOOK_TOKEN = "xoxb-webhook-token-31d8"
HOOK_SECRET = "hook-secret-5a6b-0123456789abcdef"
SECRETS = (STORE_PASSWORD, KAFKA_PASSWORD, STORAGE_SECRET, WEBHOOK_TOKEN, HOOK_SECRET)

runner = CliRunner()


def write_config(directory: Path, store: str) -> Path:
    path = directory / "driftloop.yaml"
    path.write_text(
        f"store: '{store}'\n"
        f"transport: 'kafka://ingest:{KAFKA_PASSWORD}@127.0.0.1:9092/insights'\n"
        f"storage: 's3://bucket/models?endpoint_url=http://127.0.0.1:9&secret_key={STORAGE_SECRET}'\n"
        "notifiers:\n"
        f"  slack-ops: {{type: slack, webhook_url: 'https://hooks.slack.com/services/T0/B0/"
        f"{WEBHOOK_TOKEN}'}}\n"
        f"hooks: {{secret: '{HOOK_SECRET}', signature: legacy}}\n"
    )
    return path


def printed(result: Result) -> str:
    return result.stdout + result.stderr


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, (secret, text)


def unreachable_store() -> str:
    return f"postgresql+psycopg://driftloop:{STORE_PASSWORD}@127.0.0.1:1/driftloop"


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_config_check_masks_every_password_and_token(tmp_path: Path, as_json: bool) -> None:
    config = write_config(tmp_path, unreachable_store())
    result = runner.invoke(app, ["config", "check", str(config)] + (["--json"] if as_json else []))
    assert result.exit_code == 0, printed(result)
    assert_no_secret(printed(result))
    if as_json:
        summary = json.loads(result.stdout)
        assert summary["store"] == "postgresql+psycopg://driftloop:***@127.0.0.1:1/driftloop"
        assert summary["transport"] == "kafka://ingest:***@127.0.0.1:9092/insights"
        assert summary["storage"].endswith("&secret_key=***")
    else:
        assert "store: postgresql+psycopg://driftloop:***@127.0.0.1:1/driftloop" in result.stdout


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_an_unreachable_store_is_named_without_its_password(tmp_path: Path, as_json: bool) -> None:
    config = write_config(tmp_path, unreachable_store())
    result = runner.invoke(
        app, ["db", "current", "-c", str(config)] + (["--json"] if as_json else [])
    )
    assert result.exit_code == 1, printed(result)
    assert_no_secret(printed(result))
    assert "driftloop:***@127.0.0.1:1" in printed(result)


@pytest.mark.postgres
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_db_commands_show_the_store_without_its_password(
    tmp_path: Path, fresh_postgres_url: str, as_json: bool
) -> None:
    """PostgreSQL here trusts local connections, so it takes any password."""
    store = sa.engine.make_url(fresh_postgres_url).set(password=STORE_PASSWORD)
    config = write_config(tmp_path, store.render_as_string(hide_password=False))
    flag = ["--json"] if as_json else []
    for command in (["db", "upgrade"], ["db", "current"]):
        result = runner.invoke(app, [*command, "-c", str(config), *flag])
        assert result.exit_code == 0, printed(result)
        assert_no_secret(printed(result))
        assert ":***@127.0.0.1" in result.stdout


def test_a_config_error_does_not_echo_the_secret_it_refuses(tmp_path: Path) -> None:
    short = "too-short-session-secret"
    config = tmp_path / "driftloop.yaml"
    config.write_text(
        f"dashboard: {{session_secret: '{short}'}}\n"
        f"serving: {{port: 'postgresql://u:{STORE_PASSWORD}@h/db'}}\n"
    )
    for flag in ([], ["--json"]):
        result = runner.invoke(app, ["config", "check", str(config), *flag])
        assert result.exit_code == 1
        assert "dashboard.session_secret: String should have at least 32" in printed(result)
        assert short not in printed(result)
        assert STORE_PASSWORD not in printed(result)


def test_whatever_a_command_prints_passes_through_the_configs_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The net under every command: a secret a command happened to print (a notifier's error
    quoting its URL, say) comes out masked, on stdout and stderr, in text and in JSON; an API
    key (``keys create`` prints the new one) is left alone."""
    load(write_config(tmp_path, unreachable_store()))
    url = f"https://hooks.slack.com/services/T0/B0/{WEBHOOK_TOKEN}"
    api_key = "dl_0123abcd_" + "k" * 43
    console.print(f"posting to {url} with {api_key}")
    err_console.print(f"signing with {HOOK_SECRET}")
    print_json({"detail": [f"bootstrap ingest:{KAFKA_PASSWORD}@127.0.0.1:9092"]})
    report_error("BackendUnavailableError", f"cannot reach {url}", 1)
    out, err = capsys.readouterr()
    assert_no_secret(out + err)
    assert "posting to *** with " + api_key in out
    assert "signing with ***" in err
    document, _ = json.JSONDecoder().raw_decode(out[out.index("{") :])
    assert document["detail"] == ["bootstrap ingest:***@127.0.0.1:9092"]
    assert "cannot reach ***" in out + err
