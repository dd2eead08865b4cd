"""Datadog-like message templates: sections, variables, mentions, injection safety, errors."""

from __future__ import annotations

import pytest

from driftloop.errors import ConfigError
from driftloop.messages import MessageTemplate

TEMPLATE = (
    "Confidence of {{model}} is {{value}} (threshold {{threshold}}).\n"
    "{{#is_warning}}Warning @slack-confidence{{/is_warning}}"
    "{{#is_alert}}Alert @slack-confidence @jira-mlops @retrain{{/is_alert}}"
    "{{#is_recovery}}Recovered.{{/is_recovery}}"
    "{{#is_no_data}}No data @pager{{/is_no_data}}"
    "{{^is_alert}} (not an alert){{/is_alert}}"
)
VARIABLES = {"model": "review-classifier", "value": "0.72", "threshold": "0.8"}


@pytest.mark.parametrize(
    ("flag", "text", "handles"),
    [
        (
            "is_warning",
            "Confidence of review-classifier is 0.72 (threshold 0.8).\n"
            "Warning @slack-confidence (not an alert)",
            ("slack-confidence",),
        ),
        (
            "is_alert",
            "Confidence of review-classifier is 0.72 (threshold 0.8).\n"
            "Alert @slack-confidence @jira-mlops @retrain",
            ("slack-confidence", "jira-mlops", "retrain"),
        ),
        (
            "is_recovery",
            "Confidence of review-classifier is 0.72 (threshold 0.8).\nRecovered. (not an alert)",
            (),
        ),
        (
            "is_no_data",
            "Confidence of review-classifier is 0.72 (threshold 0.8).\n"
            "No data @pager (not an alert)",
            ("pager",),
        ),
    ],
)
def test_sections_follow_the_flags(flag: str, text: str, handles: tuple[str, ...]) -> None:
    rendered = MessageTemplate(TEMPLATE).render(VARIABLES, {flag: True})
    assert rendered.text == text
    assert rendered.handles == handles


def test_nested_sections_and_unknown_names_render_empty() -> None:
    template = MessageTemplate(
        "{{#is_alert}}A{{#is_renotify}} again{{/is_renotify}}{{/is_alert}} {{nope}}|{{region}}"
    )
    assert template.render({"region": "eu"}, {"is_alert": True}).text == "A |eu"
    assert template.render({}, {"is_alert": True, "is_renotify": True}).text == "A again |"
    assert template.render({}, {"unknown_flag": True}).text == "|"


def test_values_are_inserted_literally_and_never_reparsed() -> None:
    template = MessageTemplate("model {{model}} {{#is_warning}}@team{{/is_warning}}")
    hostile = {"model": "{{#is_warning}}x{{/is_warning}} @attacker {{value}} ${HOME} {0}"}
    rendered = template.render(hostile, {"is_alert": True})
    assert rendered.text == "model {{#is_warning}}x{{/is_warning}} @attacker {{value}} ${HOME} {0}"
    assert rendered.handles == ()  # a mention inside a value routes nowhere
    warning = template.render(hostile, {"is_warning": True})
    assert warning.handles == ("team",)


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("{{#is_alert}}never closed", "section 'is_alert' opened at character 0 is never closed"),
        ("x {{/is_alert}}", "closes a section that was never opened"),
        (
            "{{#is_alert}}{{#is_warning}}{{/is_alert}}{{/is_warning}}",
            "closes 'is_warning', opened at character 13",
        ),
    ],
)
def test_malformed_templates_are_specific_config_errors(source: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error.replace("(", r"\(")):
        MessageTemplate(source, name="monitor 'm': message")


def test_a_mention_at_the_end_of_a_section_does_not_fuse_with_the_next_one() -> None:
    template = MessageTemplate(
        "{{#is_alert}}low confidence @retrain{{/is_alert}}{{#is_rejected}}Rejected @jira"
        "{{/is_rejected}}"
    )
    alert = template.render({}, {"is_alert": True, "is_rejected": True})
    assert alert.handles == ("retrain", "jira")
    assert template.render({}, {"is_rejected": True}).handles == ("jira",)
