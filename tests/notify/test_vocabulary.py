"""One template vocabulary (#21 part 5): the names a monitor message renders with are the names a
webhook payload or a dispatch input renders with, and they hold the same values."""

from __future__ import annotations

import itertools

import pytest

from driftloop.messages import FLAGS, MessageTemplate
from driftloop.monitors.events import RETIRED_REASON, Event, MonitorState, transition_flags
from driftloop.notify.base import Notification
from driftloop.notify.variables import VARIABLES, notification_variables, render_payload


def _event(
    previous: MonitorState,
    state: MonitorState,
    *,
    renotification: bool = False,
    retired: bool = False,
) -> Event:
    return Event(
        event_id="e1",
        monitor="confidence",
        group={"model": "reviews"},
        previous=previous,
        state=state,
        value=0.61,
        threshold=0.7,
        timestamp=1_767_225_600.0,
        incident_id="i1",
        message="low",
        renotification=renotification,
        details={"reason": RETIRED_REASON} if retired else {},
    )


def test_message_flags_and_payload_variables_are_one_list() -> None:
    some = transition_flags(
        MonitorState.OK, MonitorState.ALERT, renotification=False, retired=False
    )
    assert set(some) == set(FLAGS)
    assert set(FLAGS) <= set(VARIABLES)
    assert "previous_state" in VARIABLES


@pytest.mark.parametrize(("previous", "state"), list(itertools.permutations(list(MonitorState), 2)))
def test_a_payload_sees_the_flags_its_message_saw(
    previous: MonitorState, state: MonitorState
) -> None:
    event = _event(previous, state)
    variables = notification_variables(Notification.from_event(event, dashboard_url="http://d"))
    expected = transition_flags(previous, state, renotification=False, retired=False)
    assert {flag: variables[flag] for flag in FLAGS} == expected
    assert variables["previous_state"] == str(previous)
    sections = "".join(f"{{{{#{flag}}}}}{flag} {{{{/{flag}}}}}" for flag in FLAGS)
    message = MessageTemplate(sections).render({}, expected).text
    payload = render_payload({flag: f"{{{{{flag}}}}}" for flag in FLAGS}, variables)
    assert message.split() == [flag for flag in FLAGS if payload[flag] is True]


def test_renotification_and_retirement_use_the_same_names_in_payloads() -> None:
    again = notification_variables(
        Notification.from_event(
            _event(MonitorState.ALERT, MonitorState.ALERT, renotification=True),
            dashboard_url="http://d",
        )
    )
    assert again["is_renotify"] is True
    assert again["renotification"] is True  # the old name keeps working
    retired = notification_variables(
        Notification.from_event(
            _event(MonitorState.ALERT, MonitorState.OK, retired=True), dashboard_url="http://d"
        )
    )
    assert retired["is_retired"] is True
    assert render_payload({"was": "{{previous_state}}", "old": "{{previous}}"}, retired) == {
        "was": "ALERT",
        "old": "ALERT",
    }
