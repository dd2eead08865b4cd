"""The dashboard's routes, as an :class:`~fastapi.APIRouter` the serving app mounts.

``GET /`` (and ``/dashboard``, where notifications link) is the page; ``/login`` exchanges an
API key for a signed HttpOnly session cookie; ``/dashboard/api/...`` is the JSON the page polls
every couple of seconds; ``/dashboard/static/...`` serves the assets shipped in the package
(uPlot is vendored there: nothing is fetched from a CDN).

A request is let in when it carries a valid session cookie or when ``authenticate(request)``
accepts it (by default: an ``Authorization: Bearer <key>`` or ``X-API-Key`` header checked by
``verify_key``). Otherwise pages redirect to ``/login`` and the JSON API answers 401.
"""

from __future__ import annotations

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
from driftloop.dashboard.sessions import SESSION_COOKIE, SessionSigner
from driftloop.errors import AuthError, DriftloopError, InvalidInputError

KeyVerifier = Callable[[str], str]
"""Checks an API key and returns who it belongs to (a key id); raises :class:`AuthError`."""
RequestAuthenticator = Callable[[Request], None]
"""Accepts a request (returns) or rejects it (raises :class:`AuthError`)."""

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


def header_authenticator(verify_key: KeyVerifier) -> RequestAuthenticator:
    """Accepts requests whose ``Authorization: Bearer`` or ``X-API-Key`` header holds a key
    that ``verify_key`` accepts."""

    def authenticate(request: Request) -> None:
        authorization = request.headers.get("authorization", "")
        scheme, _, credentials = authorization.partition(" ")
        key = credentials.strip() if scheme.lower() == "bearer" else ""
        key = key or request.headers.get("x-api-key", "").strip()
        if not key:
            raise AuthError("missing API key: log in at /login, or send "
                            "'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
        verify_key(key)

    return authenticate


def _safe_next(target: str | None) -> str:
    """Only same-site paths after login (no ``//host`` or ``https://`` open redirects)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _error(exc: DriftloopError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
    return JSONResponse({"error": {"type": type(exc).__name__, "message": exc.message}},
                        status_code=exc.status_code, headers=headers)


def _float_param(request: Request, name: str) -> float | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInputError(f"{name} must be a unix time in seconds, got {raw!r}") from None
    if not math.isfinite(value):
        raise InvalidInputError(f"{name} must be finite, got {raw!r}")
    return value


def _time_range(request: Request, now: float) -> tuple[float, float]:
    end = _float_param(request, "end")
    start = _float_param(request, "start")
    span = _float_param(request, "span")
    end = now if end is None else end
    if start is None:
        start = end - (_RANGE_DEFAULT if span is None else span)
    if not end > start:
        raise InvalidInputError(f"start ({start}) must be before end ({end})")
    if end - start > _MAX_RANGE:
        raise InvalidInputError(f"the time range may span at most {_MAX_RANGE / 86400:g} days")
    return start, end


def _login_page(*, next_path: str, message: str | None = None) -> str:
    template = (STATIC_DIR / "login.html").read_text(encoding="utf-8")
    notice = f'<p class="error" role="alert">{html.escape(message)}</p>' if message else ""
    return (template.replace("{{next}}", html.escape(next_path, quote=True))
            .replace("{{message}}", notice))


def dashboard_router(
    data: DashboardData,
    *,
    verify_key: KeyVerifier,
    session_secret: bytes,
    authenticate: RequestAuthenticator | None = None,
    session_max_age: float = 12 * 3600.0,
    poll_interval: float = 2.0,
) -> APIRouter:
    """The dashboard's routes over ``data``, protected by ``verify_key`` (the app's API keys)."""
    signer = SessionSigner(session_secret, max_age=session_max_age)
    check_request = authenticate or header_authenticator(verify_key)
    router = APIRouter(tags=["dashboard"], include_in_schema=False)

    def admit(request: Request) -> None:
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            try:
                signer.verify(cookie)
                return
            except AuthError:
                pass
        check_request(request)

    def page(request: Request) -> Response:
        try:
            admit(request)
        except AuthError:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        body = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
        body = body.replace("{{poll_ms}}", str(int(poll_interval * 1000)))
        return HTMLResponse(body, headers={"Cache-Control": "no-store"})

    @router.get("/")
    async def index(request: Request) -> Response:
        return await anyio.to_thread.run_sync(page, request)

    @router.get("/dashboard")
    async def dashboard_page(request: Request) -> Response:
        return await anyio.to_thread.run_sync(page, request)

    @router.get("/login")
    async def login_form(request: Request) -> Response:
        next_path = _safe_next(request.query_params.get("next"))
        return HTMLResponse(_login_page(next_path=next_path))

    @router.post("/login")
    async def login(request: Request) -> Response:
        body = await request.body()
        if len(body) > _MAX_LOGIN_BODY:
            return HTMLResponse(_login_page(next_path="/", message="request too large"),
                                status_code=413)
        form = parse_qs(body.decode("utf-8", errors="replace"))
        key = (form.get("key") or [""])[0].strip()
        next_path = _safe_next((form.get("next") or ["/"])[0])
        if not key:
            return HTMLResponse(_login_page(next_path=next_path, message="enter an API key"),
                                status_code=401)
        try:
            subject = await anyio.to_thread.run_sync(verify_key, key)
        except AuthError as exc:
            return HTMLResponse(_login_page(next_path=next_path, message=exc.message),
                                status_code=exc.status_code)
        response = RedirectResponse(next_path, status_code=303)
        response.set_cookie(
            SESSION_COOKIE, signer.sign(subject), max_age=int(session_max_age), httponly=True,
            samesite="lax", secure=request.url.scheme == "https", path="/",
        )
        return response

    @router.post("/logout")
    async def logout() -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @router.get("/dashboard/static/{path:path}")
    async def static(path: str) -> Response:
        file = (STATIC_DIR / path).resolve()
        media_type = _STATIC_TYPES.get(file.suffix)
        if (media_type is None or not file.is_file()
                or not file.is_relative_to(STATIC_DIR.resolve())):
            return JSONResponse({"error": {"type": "NotFoundError",
                                           "message": f"no such asset: {path}"}},
                                status_code=404)
        return FileResponse(file, media_type=media_type,
                            headers={"Cache-Control": "public, max-age=300"})

    def api(request: Request, build: Callable[[], Any]) -> Response:
        try:
            admit(request)
            return JSONResponse(build(), headers={"Cache-Control": "no-store"})
        except DriftloopError as exc:
            return _error(exc)

    @router.get("/dashboard/api/models")
    async def models(request: Request) -> Response:
        def build() -> Any:
            return {"now": data.now(), "poll_interval": poll_interval,
                    "models": [asdict(summary) for summary in data.models()]}

        return await anyio.to_thread.run_sync(api, request, build)

    @router.get("/dashboard/api/models/{model}")
    async def model_snapshot(request: Request, model: str) -> Response:
        def build() -> Any:
            start, end = _time_range(request, data.now())
            raw_points = request.query_params.get("points", "1000")
            if not raw_points.isdigit():
                raise InvalidInputError(f"points must be a whole number, got {raw_points!r}")
            return snapshot(data, model, start, end, max_points=int(raw_points)).to_dict()

        return await anyio.to_thread.run_sync(api, request, build)

    return router
