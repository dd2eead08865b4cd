"""One value formatter: a missing value reads the same in every message driftloop writes."""

from __future__ import annotations

from pathlib import Path

from driftloop.messages import MISSING_VALUE, format_value
from driftloop.notify import Notification, base
from notify.fake_services import make_event


def test_values_read_with_four_significant_digits_and_a_missing_one_as_n_a() -> None:
    assert format_value(0.8123456) == "0.8123"
    assert format_value(1234567.0) == "1.235e+06"
    assert format_value(None) == MISSING_VALUE == "n/a"


def test_no_module_but_messages_defines_a_value_formatter_of_its_own() -> None:
    source = Path(__file__).resolve().parents[1] / "src" / "driftloop"
    defining = sorted(
        str(path.relative_to(source))
        for path in source.rglob("*.py")
        if "def format_value(" in path.read_text()
    )

    assert defining == ["messages.py"]
    assert base.format_value is format_value  # the notifiers' name for it


def test_a_notification_without_data_says_n_a_in_its_value_and_its_timeline() -> None:
    notification = Notification.from_event(make_event(value=None), dashboard_url="http://dashboard")

    assert notification.value_text == "n/a"
    assert notification.timeline[0].value is None
    assert "no data" not in notification.value_text
