"""The dashboard routes over the real store: who gets in, what the JSON says, the assets."""

from __future__ import annotations

import html
import time
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from dashboard.world import MODEL, MONITOR, DashboardWorld
from driftloop.dashboard import SESSION_COOKIE, SessionStore, dashboard_router
from driftloop.timestamps import epoch_seconds, iso_utc
from serving.mounted import mounted_app
from timeformat import iso_times

SECRET = b"k" * 32


def served(world: DashboardWorld) -> FastAPI:
    """The dashboard in the serving app, as the system mounts it (one replica of it)."""
    router = dashboard_router(
        world.data,
        api_keys=world.api_keys,
        sessions=SessionStore(world.database),
        session_secret=SECRET,
    )
    return mounted_app(world.database, router, config=world.config, api_keys=world.api_keys)


@pytest.fixture
def client(lived_world: DashboardWorld) -> Iterator[TestClient]:
    with TestClient(served(lived_world), base_url="http://testserver") as test_client:
        yield test_client


@pytest.fixture
def api_key(lived_world: DashboardWorld) -> str:
    return lived_world.api_keys.create("dashboard", name="dashboard-viewer").key


def test_a_visitor_without_a_key_is_sent_to_the_login_page(client: TestClient) -> None:
    page = client.get("/?model=review-classifier", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2F%3Fmodel%3Dreview-classifier"
    api = client.get(f"/dashboard/api/models/{MODEL}")
    assert api.status_code == 401
    assert api.json()["error"]["type"] == "AuthError"
    login = client.get("/login?next=/dashboard")
    assert login.status_code == 200
    assert 'name="key"' in login.text
    assert 'value="/dashboard"' in login.text


def test_an_unknown_or_revoked_key_cannot_log_in(
    client: TestClient, lived_world: DashboardWorld
) -> None:
    response = client.post(
        "/login", data={"key": "dl_00000000_" + "a" * 30, "next": "/"}, follow_redirects=False
    )
    assert response.status_code == 401
    assert SESSION_COOKIE not in response.cookies
    assert "unknown API key" in response.text
    created = lived_world.api_keys.create("dashboard")
    lived_world.api_keys.revoke(created.info.key_id)
    revoked = client.post("/login", data={"key": created.key}, follow_redirects=False)
    assert revoked.status_code == 401
    assert "was revoked" in revoked.text
    assert (
        client.get("/dashboard/api/models", headers={"X-API-Key": created.key}).status_code == 401
    )


def test_login_sets_an_httponly_session_cookie_that_opens_the_page(
    client: TestClient, api_key: str
) -> None:
    response = client.post(
        "/login", data={"key": api_key, "next": "/dashboard?model=x"}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard?model=x"
    set_cookie = response.headers["set-cookie"]
    assert set_cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in set_cookie
    assert "SameSite=strict" in set_cookie
    assert api_key not in set_cookie
    page = client.get("/")
    assert page.status_code == 200
    assert "/dashboard/static/vendor/uplot/uPlot.iife.min.js" in page.text
    assert 'data-poll-ms="2000"' in page.text
    client.post("/logout", follow_redirects=False)
    client.cookies.clear()
    assert client.get("/", follow_redirects=False).status_code == 303


def test_a_predict_key_is_refused_at_login_and_in_headers(
    client: TestClient, lived_world: DashboardWorld
) -> None:
    predict = lived_world.api_keys.create("predict", name="web-client").key
    response = client.post("/login", data={"key": predict}, follow_redirects=False)
    assert response.status_code == 403
    assert SESSION_COOKIE not in response.cookies
    assert "needs a 'dashboard' or 'admin' key" in html.unescape(response.text)
    api = client.get("/dashboard/api/models", headers={"X-API-Key": predict})
    assert api.status_code == 403
    assert api.json()["error"]["type"] == "ForbiddenError"
    assert (
        client.get("/", headers={"X-API-Key": predict}, follow_redirects=False).status_code == 303
    )
    admin = lived_world.api_keys.create("admin").key
    assert client.post("/login", data={"key": admin}, follow_redirects=False).status_code == 303
    assert client.get("/dashboard/api/models").status_code == 200


def test_a_revoked_key_is_logged_out_at_its_next_request(
    client: TestClient, lived_world: DashboardWorld
) -> None:
    created = lived_world.api_keys.create("dashboard")
    client.post("/login", data={"key": created.key}, follow_redirects=False)
    cookie = client.cookies[SESSION_COOKIE]
    assert client.get("/dashboard/api/models").status_code == 200
    lived_world.api_keys.revoke(created.info.key_id)
    refused = client.get("/dashboard/api/models")
    assert refused.status_code == 401
    assert "was revoked" in refused.json()["error"]["message"]
    assert 'driftloop_session=""' in refused.headers["set-cookie"]
    client.cookies.set(SESSION_COOKIE, cookie)
    page = client.get("/", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"].startswith("/login")


def test_logout_ends_the_session_on_the_server(client: TestClient, api_key: str) -> None:
    client.post("/login", data={"key": api_key}, follow_redirects=False)
    cookie = client.cookies[SESSION_COOKIE]
    assert client.get("/dashboard/api/models").status_code == 200
    assert client.post("/logout", follow_redirects=False).status_code == 303
    client.cookies.set(SESSION_COOKIE, cookie)  # a copy of the cookie kept after logging out
    again = client.get("/dashboard/api/models")
    assert again.status_code == 401
    assert "logged out" in again.json()["error"]["message"]


def test_a_session_opened_on_one_replica_works_and_ends_on_another(
    client: TestClient, lived_world: DashboardWorld, api_key: str
) -> None:
    other = served(lived_world)
    client.post("/login", data={"key": api_key}, follow_redirects=False)
    with TestClient(other, base_url="http://testserver") as replica:
        replica.cookies.set(SESSION_COOKIE, client.cookies[SESSION_COOKIE])
        assert replica.get("/dashboard/api/models").status_code == 200
        replica.post("/logout", follow_redirects=False)
    assert client.get("/dashboard/api/models").status_code == 401


def test_cross_site_logins_and_logouts_are_refused(client: TestClient, api_key: str) -> None:
    evil = {"Origin": "https://evil.example"}
    login = client.post("/login", data={"key": api_key}, headers=evil, follow_redirects=False)
    assert login.status_code == 403
    assert SESSION_COOKIE not in login.cookies
    cross = client.post(
        "/login",
        data={"key": api_key},
        follow_redirects=False,
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert cross.status_code == 403
    same = client.post(
        "/login",
        data={"key": api_key},
        follow_redirects=False,
        headers={"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"},
    )
    assert same.status_code == 303
    assert client.post("/logout", headers=evil, follow_redirects=False).status_code == 403
    assert client.get("/dashboard/api/models").status_code == 200


def test_pages_send_a_strict_content_security_policy(client: TestClient, api_key: str) -> None:
    client.post("/login", data={"key": api_key}, follow_redirects=False)
    for path in ("/", "/dashboard", "/login"):
        headers = client.get(path).headers
        policy = headers["content-security-policy"]
        assert "default-src 'none'" in policy
        assert "script-src 'self';" in policy
        assert "unsafe-inline" not in policy
        assert "frame-ancestors 'none'" in policy
        assert headers["x-frame-options"] == "DENY"


def test_a_forged_cookie_does_not_open_the_api(client: TestClient, api_key: str) -> None:
    client.post("/login", data={"key": api_key}, follow_redirects=False)
    good = client.cookies[SESSION_COOKIE]
    payload, _, signature = good.partition(".")
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, f"{payload}x.{signature}")
    assert client.get("/dashboard/api/models").status_code == 401


def test_login_never_redirects_off_site(client: TestClient, api_key: str) -> None:
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        response = client.post(
            "/login", data={"key": api_key, "next": target}, follow_redirects=False
        )
        assert response.headers["location"] == "/"


def test_the_snapshot_has_charts_thresholds_marks_incidents_versions_and_jobs(
    client: TestClient, api_key: str
) -> None:
    headers = {"Authorization": f"Bearer {api_key}"}
    models = client.get("/dashboard/api/models", headers=headers).json()
    assert [m["name"] for m in models["models"]] == [MODEL]
    assert models["models"][0]["worst_state"] == "ALERT"
    assert models["models"][0]["production_version"] == 2

    body = client.get(f"/dashboard/api/models/{MODEL}?span=1800&points=200", headers=headers).json()
    assert epoch_seconds(body["end"]) - epoch_seconds(body["start"]) == pytest.approx(1800)
    (chart,) = body["charts"]
    assert chart["monitor"] == MONITOR
    assert (chart["warning"], chart["critical"], chart["direction"]) == (0.8, 0.6, "below")
    assert chart["state"] == "ALERT"
    assert 0 < len(chart["points"]) <= 200
    values = [p["avg"] for p in chart["points"]]
    assert max(values) > 0.9
    assert min(values) == pytest.approx(0.55)
    assert all(p["min"] <= p["avg"] for p in chart["points"])
    kinds = {(m["kind"], m["label"]) for m in chart["marks"]}
    assert ("incident", "OK→WARN") in kinds
    assert ("incident", "WARN→ALERT") in kinds
    assert ("deploy", "set v2") in kinds
    assert [m["state"] for m in body["monitors"]] == ["ALERT"]
    (incident,) = body["incidents"]
    assert incident["status"] == "open"
    assert [e["kind"] for e in incident["timeline"]][:1] == ["opened"]
    assert len(incident["timeline"]) >= 3
    assert [(v["version"], v["aliases"]) for v in body["versions"]] == [
        (2, ["production"]),
        (1, []),
    ]
    assert body["versions"][0]["accuracy"] == pytest.approx(0.93)
    (job,) = body["jobs"]
    assert job["state"] == "succeeded"
    assert [s["step"] for s in job["steps"]] == ["fetch_data", "train", "evaluate"]
    assert "loss 0.41" in job["steps"][1]["log"]


def test_every_moment_in_the_json_is_iso_8601_utc(client: TestClient, api_key: str) -> None:
    """One timestamp format in every JSON body (#21 part 5), the dashboard's included."""
    headers = {"X-API-Key": api_key}
    models = client.get("/dashboard/api/models", headers=headers).json()
    assert epoch_seconds(models["now"]) == pytest.approx(time.time(), abs=60)
    end = time.time()
    start = end - 1800
    # the range may be given as ISO 8601 as well as in unix seconds; both read the same
    by_iso = client.get(
        f"/dashboard/api/models/{MODEL}",
        params={"start": iso_utc(start), "end": iso_utc(end), "points": "200"},
        headers=headers,
    ).json()
    by_seconds = client.get(
        f"/dashboard/api/models/{MODEL}?start={start}&end={end}&points=200", headers=headers
    ).json()
    assert (by_iso["start"], by_iso["end"]) == (by_seconds["start"], by_seconds["end"])
    assert epoch_seconds(by_iso["start"]) == pytest.approx(start)
    body = by_seconds
    for moment in (body["start"], body["end"], body["generated_at"]):
        assert iso_times({"timestamp": moment})
    moments = set(iso_times(body))
    assert {
        "$.monitors[0].since",
        "$.monitors[0].last_evaluated",
        "$.charts[0].points[0].timestamp",
        "$.charts[0].marks[0].timestamp",
        "$.incidents[0].opened_at",
        "$.incidents[0].timeline[0].timestamp",
        "$.versions[0].created_at",
        "$.versions[0].deployed_at",
        "$.jobs[0].created_at",
        "$.jobs[0].steps[0].started_at",
    } <= moments
    assert body["panels"], "the serving panels carry a time grid"
    for panel in body["panels"]:
        assert panel["timestamps"]
        assert all(iso_times({"timestamp": moment}) for moment in panel["timestamps"])


def test_bad_ranges_are_refused_with_a_clear_message(client: TestClient, api_key: str) -> None:
    headers = {"X-API-Key": api_key}
    now = time.time()
    backwards = client.get(
        f"/dashboard/api/models/{MODEL}?start={now}&end={now - 10}", headers=headers
    )
    assert backwards.status_code == 422
    assert "before end" in backwards.json()["error"]["message"]
    too_many = client.get(f"/dashboard/api/models/{MODEL}?points=1000001", headers=headers)
    assert too_many.status_code == 422
    assert "max_points" in too_many.json()["error"]["message"]
    garbage = client.get(f"/dashboard/api/models/{MODEL}?start=yesterday", headers=headers)
    assert garbage.status_code == 422


def test_static_assets_are_served_from_the_package_and_nothing_else(client: TestClient) -> None:
    script = client.get("/dashboard/static/vendor/uplot/uPlot.iife.min.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "uPlot" in script.text
    assert client.get("/dashboard/static/dashboard.js").status_code == 200
    assert client.get("/dashboard/static/../router.py").status_code == 404
    assert client.get("/dashboard/static/%2e%2e/router.py").status_code == 404
    assert client.get("/dashboard/static/vendor/uplot/LICENSE").status_code == 404
