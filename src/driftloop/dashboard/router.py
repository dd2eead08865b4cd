"""The dashboard's routes, as an :class:`~fastapi.APIRouter` the serving app mounts.

``GET /`` (and ``/dashboard``, where notifications link) is the page; ``/login`` exchanges an
API key with the ``dashboard`` or ``admin`` scope for a session (kept in the store) named by a
signed HttpOnly cookie, ``/logout`` ends it on the server; ``/dashboard/api/...`` is the JSON the
page polls every couple of seconds (every moment in it ISO 8601 UTC); ``/dashboard/static/...``
serves the assets shipped in the package (uPlot is vendored there: nothing is fetched from a
CDN).

A request is let in when its session cookie names a live session whose key still exists, is not
revoked and still has the scope (checked at every request: a revoked key's session ends at its
next one), or when it carries such a key itself (``Authorization: Bearer <key>`` or
``X-API-Key``). Otherwise pages redirect to ``/login`` and the JSON API answers 401 (403 for a
key without the scope). ``POST /login`` and ``/logout`` refuse cross-site requests (their
``Origin`` or ``Sec-Fetch-Site`` header), the cookie is ``SameSite=Strict``, and every page is
sent with a strict Content-Security-Policy (only the package's own scripts and styles).
"""

from __future__ import annotations

import contextlib
import html
import math
from collections.abc import Callable
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

from driftloop.dashboard.data import DashboardData, snapshot
from driftloop.dashboard.sessions import SESSION_COOKIE, SessionSigner, SessionStore
from driftloop.errors import (
    AuthError,
    DriftloopError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
)
from driftloop.serving.errors import error_response
from driftloop.serving.keys import ApiKeyInfo, ApiKeyStore, Scope
from driftloop.timestamps import iso_utc, parse_moment

STATIC_DIR = Path(str(resources.files("driftloop.dashboard") / "static"))
_STATIC_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
_RANGE_DEFAULT = 3600.0
_MAX_RANGE = 400 * 86400.0
_MAX_LOGIN_BODY = 8192

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
"""Sent with every dashboard page: no inline script or style, nothing from another origin, never
framed."""
_PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # "no-referrer" would make the forms send Origin: null
    "Cache-Control": "no-store",
}


def _header_key(request: Request) -> str:
    authorization = request.headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    key = credentials.strip() if scheme.lower() == "bearer" else ""
    return key or request.headers.get("x-api-key", "").strip()


def _require_dashboard_scope(info: ApiKeyInfo) -> ApiKeyInfo:
    if not info.scope.allows(Scope.DASHBOARD):
        raise ForbiddenError(
            f"API key {info.key_id} ({info.name}) has scope {info.scope.value!r}; the dashboard "
            f"needs a {Scope.DASHBOARD.value!r} or {Scope.ADMIN.value!r} key "
            f"(driftloop keys create --scope dashboard)"
        )
    return info


def _refuse_cross_site(request: Request) -> None:
    """A state-changing request must come from the dashboard's own pages: a browser names the
    page's origin in ``Origin`` and says ``Sec-Fetch-Site``; a cross-site form is refused."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in {"same-origin", "none"}:
        raise ForbiddenError(f"cross-site request refused (Sec-Fetch-Site: {fetch_site[:32]})")
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.url.netloc}"
    if origin is not None and origin != own:
        raise ForbiddenError("cross-site request refused (its Origin is not this dashboard)")


def _safe_next(target: str | None) -> str:
    """Only same-site paths after login (no ``//host`` or ``https://`` open redirects)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _seconds_param(request: Request, name: str) -> float | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInputError(f"{name} must be a number of seconds, got {raw[:64]!r}") from None
    if not math.isfinite(value):
        raise InvalidInputError(f"{name} must be finite, got {raw[:64]!r}")
    return value


def _moment_param(request: Request, name: str) -> float | None:
    """A moment in the query: ISO 8601 (UTC unless it names a zone) or seconds since the epoch."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return parse_moment(raw, name)
    except InvalidInputError:
        raise InvalidInputError(
            f"{name} must be a unix time in seconds or an ISO 8601 time, got {raw[:64]!r}"
        ) from None


def _time_range(request: Request, now: float) -> tuple[float, float]:
    end = _moment_param(request, "end")
    start = _moment_param(request, "start")
    span = _seconds_param(request, "span")
    end = now if end is None else end
    if start is None:
        start = end - (_RANGE_DEFAULT if span is None else span)
    if not end > start:
        raise InvalidInputError(f"start ({iso_utc(start)}) must be before end ({iso_utc(end)})")
    if end - start > _MAX_RANGE:
        raise InvalidInputError(f"the time range may span at most {_MAX_RANGE / 86400:g} days")
    return start, end


def _login_page(*, next_path: str, message: str | None = None) -> str:
    template = (STATIC_DIR / "login.html").read_text(encoding="utf-8")
    notice = f'<p class="error" role="alert">{html.escape(message)}</p>' if message else ""
    return template.replace("{{next}}", html.escape(next_path, quote=True)).replace(
        "{{message}}", notice
    )


# A factory: its statements and branches are the short route handlers it defines, one a page.
def dashboard_router(  # noqa: C901, PLR0915
    data: DashboardData,
    *,
    api_keys: ApiKeyStore,
    sessions: SessionStore,
    session_secret: bytes,
    poll_interval: float = 2.0,
) -> APIRouter:
    """The dashboard's routes over ``data``, open to ``api_keys`` with the dashboard scope.

    Long (and marked for ruff) because it is a router factory: each nested function is one short
    route, and they share the session signer and the data source through this closure."""
    signer = SessionSigner(session_secret, max_age=sessions.max_age, clock=sessions.clock)
    router = APIRouter(tags=["dashboard"], include_in_schema=False)

    def admit(request: Request) -> None:
        """Let the request in, or raise :class:`AuthError` / :class:`ForbiddenError`."""
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            token = signer.verify(cookie).subject
            session = sessions.find(token)
            try:
                _require_dashboard_scope(api_keys.current(session.key_id))
            except AuthError as exc:
                sessions.end(token)
                raise AuthError(f"{exc.message}; this dashboard session is ended") from None
            return
        key = _header_key(request)
        if not key:
            raise AuthError(
                "missing API key: log in at /login, or send "
                "'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
            )
        _require_dashboard_scope(api_keys.authenticate(key))

    def page(request: Request) -> Response:
        try:
            admit(request)
        except AuthError:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            response = RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
            response.delete_cookie(SESSION_COOKIE, path="/")
            return response
        body = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
        body = body.replace("{{poll_ms}}", str(int(poll_interval * 1000)))
        return HTMLResponse(body, headers=_PAGE_HEADERS)

    @router.get("/")
    async def index(request: Request) -> Response:
        return await anyio.to_thread.run_sync(page, request)

    @router.get("/dashboard")
    async def dashboard_page(request: Request) -> Response:
        return await anyio.to_thread.run_sync(page, request)

    @router.get("/login")
    async def login_form(request: Request) -> Response:
        next_path = _safe_next(request.query_params.get("next"))
        return HTMLResponse(_login_page(next_path=next_path), headers=_PAGE_HEADERS)

    def log_in(key: str) -> str:
        """A new session token for ``key``, if it may see the dashboard."""
        info = _require_dashboard_scope(api_keys.authenticate(key))
        return sessions.open(info.key_id)

    @router.post("/login")
    async def login(request: Request) -> Response:
        def refuse(message: str, status_code: int, next_path: str = "/") -> Response:
            return HTMLResponse(
                _login_page(next_path=next_path, message=message),
                status_code=status_code,
                headers=_PAGE_HEADERS,
            )

        try:
            _refuse_cross_site(request)
        except ForbiddenError as exc:
            return refuse(exc.message, exc.status_code)
        body = await request.body()
        if len(body) > _MAX_LOGIN_BODY:
            return refuse("request too large", 413)
        form = parse_qs(body.decode("utf-8", errors="replace"))
        key = (form.get("key") or [""])[0].strip()
        next_path = _safe_next((form.get("next") or ["/"])[0])
        if not key:
            return refuse("enter an API key", 401, next_path)
        try:
            token = await anyio.to_thread.run_sync(log_in, key)
        except DriftloopError as exc:
            return refuse(exc.message, exc.status_code, next_path)
        response = RedirectResponse(next_path, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            signer.sign(token),
            max_age=int(sessions.max_age),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    def end_session(cookie: str | None) -> None:
        if cookie:
            with contextlib.suppress(AuthError):  # a forged or expired cookie names no session
                sessions.end(signer.verify(cookie).subject)

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        _refuse_cross_site(request)
        await anyio.to_thread.run_sync(end_session, request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @router.get("/dashboard/static/{path:path}")
    async def static(path: str) -> Response:
        file = (STATIC_DIR / path).resolve()
        media_type = _STATIC_TYPES.get(file.suffix)
        if (
            media_type is None
            or not file.is_file()
            or not file.is_relative_to(STATIC_DIR.resolve())
        ):
            raise NotFoundError(f"no such asset: {path}")
        return FileResponse(
            file, media_type=media_type, headers={"Cache-Control": "public, max-age=300"}
        )

    def api(request: Request, build: Callable[[], Any]) -> Response:
        try:
            admit(request)
            return JSONResponse(build(), headers={"Cache-Control": "no-store"})
        except AuthError as exc:  # the app answers every other error
            if not request.cookies.get(SESSION_COOKIE):
                raise
            response = error_response(exc)
            response.delete_cookie(SESSION_COOKIE, path="/")
            return response

    @router.get("/dashboard/api/models")
    async def models(request: Request) -> Response:
        def build() -> Any:
            return {
                "now": iso_utc(data.now()),
                "poll_interval": poll_interval,
                "models": [asdict(summary) for summary in data.models()],
            }

        return await anyio.to_thread.run_sync(api, request, build)

    @router.get("/dashboard/api/models/{model}")
    async def model_snapshot(request: Request, model: str) -> Response:
        def build() -> Any:
            start, end = _time_range(request, data.now())
            raw_points = request.query_params.get("points", "1000")
            if not (raw_points.isascii() and raw_points.isdigit() and len(raw_points) < 10):
                raise InvalidInputError(f"points must be a whole number, got {raw_points!r}")
            return snapshot(data, model, start, end, max_points=int(raw_points)).to_dict()

        return await anyio.to_thread.run_sync(api, request, build)

    return router
