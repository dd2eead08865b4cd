"""driftloop's own logs (#21 part 1): text and JSON lines with UTC times, levels set by the
options or the config, and no secret or API key in any line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from driftloop.cli import app
from driftloop.config import parse_config
from driftloop.database import open_database
from driftloop.logs import configure_from, configure_logging
from driftloop.serving.keys import ApiKeyStore

WEBHOOK_SECRET = "whsec_" + "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"
WEBHOOK_URL = "https://hooks.example/T0KEN-in-the-path-4242"
INSIGHTS_KEY = "dl_abcd1234_" + "Q" * 43
CONFIG = f"""
insights: {{api_key: "{INSIGHTS_KEY}"}}
notifiers:
  ops-hook:
    type: webhook
    url: "{WEBHOOK_URL}"
    hmac_secret: "{WEBHOOK_SECRET}"
    headers: {{Authorization: "Bearer header-token-777"}}
"""


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    yield stream
    logger = logging.getLogger("driftloop")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


def test_text_lines_carry_a_utc_time_level_and_logger(captured: io.StringIO) -> None:
    configure_logging("INFO", "text", stream=captured)
    logging.getLogger("driftloop.monitors.engine").info("monitor %s -> %s", "conf", "WARN")
    logging.getLogger("driftloop.x").debug("not shown at INFO")
    [line] = captured.getvalue().splitlines()
    assert line.endswith(" INFO driftloop.monitors.engine: monitor conf -> WARN")
    assert line[:24].endswith("Z")
    assert line[10] == "T"


def test_json_lines_are_objects(captured: io.StringIO) -> None:
    configure_logging("DEBUG", "json", stream=captured)
    logging.getLogger("driftloop.pipeline").debug("job %s deployed", "abcd1234")
    entry = json.loads(captured.getvalue())
    assert entry["level"] == "DEBUG"
    assert entry["logger"] == "driftloop.pipeline"
    assert entry["message"] == "job abcd1234 deployed"


def test_no_secret_or_api_key_reaches_a_log_line(captured: io.StringIO, tmp_path: Path) -> None:
    config = parse_config(CONFIG + f"store: sqlite:///{tmp_path}/d.db\n", environ={})
    configure_from(config, None, "json")
    handler = logging.getLogger("driftloop").handlers[-1]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(captured)
    log = logging.getLogger("driftloop.notify.router")
    log.warning(
        "delivery to %s failed (secret %s, key %s)", WEBHOOK_URL, WEBHOOK_SECRET, INSIGHTS_KEY
    )
    log.info("header was Bearer header-token-777, a client sent %s", "dl_ffff0000_" + "Z" * 43)
    try:
        raise RuntimeError(f"signing with {WEBHOOK_SECRET} failed")
    except RuntimeError:
        log.exception("exception text is redacted too")
    store = ApiKeyStore(open_database(config.store, base_dir=tmp_path))
    created = store.create("predict", name="ops")
    store.revoke(created.key)
    output = captured.getvalue()
    for secret in (
        WEBHOOK_SECRET,
        WEBHOOK_URL,
        INSIGHTS_KEY,
        "header-token-777",
        created.key,
        created.key.split("_", 2)[2],  # the secret part (token_urlsafe may hold "_")
        "Z" * 43,
    ):
        assert secret not in output
    lines = [json.loads(line) for line in output.splitlines()]
    assert "***" in lines[0]["message"]
    assert "dl_ffff0000_***" in lines[1]["message"]
    assert "***" in lines[2]["exception"]
    messages = [line["message"] for line in lines]
    assert f"API key {created.info.key_id} created: scope predict, name 'ops'" in messages
    assert f"API key {created.info.key_id} revoked" in messages


def test_the_options_are_checked(tmp_path: Path, captured: io.StringIO) -> None:
    (tmp_path / "driftloop.yaml").write_text("logging: {level: WARNING, format: json}\n")
    config = tmp_path / "driftloop.yaml"
    for option, value in (("--log-level", "LOUD"), ("--log-format", "xml")):
        result = CliRunner().invoke(app, ["worker", "--once", option, value, "-c", str(config)])
        assert result.exit_code == 1
        assert value in result.output
    with pytest.raises(Exception, match="format"):
        parse_config("logging: {format: xml}", environ={})


def test_a_jira_site_address_stays_readable(captured: io.StringIO, tmp_path: Path) -> None:
    """Over-redaction hides what an operator needs: a Jira site's address is no secret (its
    token is), while a webhook's URL may carry one and stays hidden."""
    config = parse_config(
        CONFIG
        + f"""
  tickets:
    type: jira
    url: https://acme.atlassian.net
    project: OPS
    token: jira-token-31337
store: sqlite:///{tmp_path}/d.db
""",
        environ={},
    )
    configure_from(config, None, "text")
    handler = logging.getLogger("driftloop").handlers[-1]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(captured)
    logging.getLogger("driftloop.notify.jira").warning(
        "POST https://acme.atlassian.net/rest/api/2/issue with jira-token-31337 answered 401; "
        "webhook %s too",
        WEBHOOK_URL,
    )
    line = captured.getvalue()
    assert "https://acme.atlassian.net/rest/api/2/issue" in line
    assert "jira-token-31337" not in line
    assert WEBHOOK_URL not in line
