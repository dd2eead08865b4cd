"""Requests without any key that used to exhaust memory or hold the server, sent over real
sockets to ``driftloop up`` (a child process, so its memory is its own): large bodies streamed
chunked to routes that read their body before checking a key (``/v1/models/{name}/retrain``,
``/v1/hooks/alert``, ``/login``) or never read it, bodies that declare an oversized
``Content-Length``, huge request heads, idle and trickling connections, and more connections
than the server takes. Each is refused quickly, the server's memory stays flat, and
``/healthz`` keeps answering."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from reliability.project import MODEL, ReliabilityProject, free_port, wait_ready

DRIFTLOOP = str(Path(sys.executable).parent / "driftloop")
MIB = 1024 * 1024
BODY_BYTES = 64 * MIB
"""What each hostile body would be if sent whole: 64 times ``serving.max_body_bytes``."""
RSS_BOUND = 24 * MIB
"""Growth of the server's resident memory allowed while one hostile request is refused (a
body buffered whole would be at least ``BODY_BYTES``)."""
IDLE_TIMEOUT = 1.0
MAX_CONNECTIONS = 16
PIECE = 64 * 1024
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Server:
    """``driftloop up`` on a loopback port, with a sampler of its resident memory."""

    project: ReliabilityProject
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss(self) -> int:
        """The server's resident memory in bytes (Linux: ``/proc/PID/statm``)."""
        pages = Path(f"/proc/{self.process.pid}/statm").read_text().split()[1]
        return int(pages) * PAGE_SIZE


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("limits")
    # the body and head limits at their defaults; the idle timeout and the connection cap small
    # enough to reach in a test
    project = ReliabilityProject.create(
        directory / "project",
        serving={"idle_timeout": f"{IDLE_TIMEOUT:g}s", "max_connections": MAX_CONNECTIONS},
    )
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLOOP_")}
    log = directory / "driftloop-up.log"
    with log.open("ab") as output:
        process = subprocess.Popen(
            [
                DRIFTLOOP,
                "up",
                "--port",
                str(port),
                "--no-worker",
                "--config",
                str(project.directory / "driftloop.yaml"),
            ],
            cwd=project.directory,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environ,
        )
    try:
        try:
            wait_ready(f"http://127.0.0.1:{port}", 60)
        except RuntimeError:
            raise AssertionError(log.read_text()[-3000:]) from None
        yield Server(project, port, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)


@dataclass
class Watch:
    """While a hostile request runs: the server's peak memory, and ``/healthz`` latency."""

    server: Server
    baseline: int = 0
    peak: int = 0
    health: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.server.rss())
            time.sleep(0.002)

    def _probe(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                status = httpx.get(self.server.url + "/healthz", timeout=10).status_code
            except httpx.TransportError:
                status = -1
            self.health.append(time.monotonic() - started if status == 200 else 99.0)
            time.sleep(0.02)

    def __enter__(self) -> Watch:
        self.baseline = self.peak = self.server.rss()
        for target in (self._sample, self._probe):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.05)  # one more sample and probe after the answer
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int
    """Bytes this client had written when the answer arrived (or the server hung up)."""
    seconds: float

    def error(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.body)["error"]
        return document


# One non-blocking socket loop (write, read, stop at the answer): split, its state would scatter.
def exchange(port: int, head: bytes, pieces: Iterator[bytes], timeout: float = 20.0) -> Answer:  # noqa: C901
    """Write ``head`` then ``pieces`` without ever blocking, and stop writing as soon as an
    answer arrives (as a browser or curl does): what the server answered, and when."""
    started = time.monotonic()
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setblocking(False)
    pending = memoryview(head)
    sent = 0
    try:
        while True:
            writing = [sock] if pending else []
            readable, writable, _ = select.select([sock], writing, [], timeout)
            if readable:
                break
            if not writable:
                if not pending:
                    raise AssertionError(f"no answer {timeout:g}s after writing {sent} bytes")
                raise AssertionError(f"stuck writing after {sent} bytes")
            try:
                written = sock.send(pending)
            except (BlockingIOError, InterruptedError):
                continue
            except (BrokenPipeError, ConnectionResetError):
                break  # the server hung up: read what it answered
            sent += written
            pending = pending[written:]
            if not pending:
                pending = memoryview(next(pieces, b""))
        sock.setblocking(True)
        sock.settimeout(timeout)
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
            head_end = data.find(b"\r\n\r\n")
            if head_end >= 0:
                length = _content_length(data[:head_end])
                if length is not None and len(data) >= head_end + 4 + length:
                    break
    finally:
        sock.close()
    seconds = time.monotonic() - started
    assert data, f"the server hung up without an answer after {sent} bytes"
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(status_line.split()[1]), headers, body, sent, seconds)


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return None


def chunked(prefix: bytes, total: int, suffix: bytes) -> Iterator[bytes]:
    """A body of ``total`` bytes in chunked framing, generated as it is sent."""
    filler = b"a" * PIECE
    yield f"{len(prefix):x}\r\n".encode() + prefix + b"\r\n"
    remaining = total - len(prefix) - len(suffix)
    frame = f"{PIECE:x}\r\n".encode() + filler + b"\r\n"
    while remaining >= PIECE:
        yield frame
        remaining -= PIECE
    tail = b"a" * remaining + suffix
    yield f"{len(tail):x}\r\n".encode() + tail + b"\r\n0\r\n\r\n"


def frames(body: bytes) -> Iterator[bytes]:
    """``body`` in chunked framing."""
    for start in range(0, len(body), PIECE):
        piece = body[start : start + PIECE]
        yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    yield b"0\r\n\r\n"


def request_head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
ROUTES = {
    # route: (path, content type, the body's first and last bytes)
    "retrain": (f"/v1/models/{MODEL}/retrain", JSON, b'{"reason": "', b'"}'),
    "inbound-hook": ("/v1/hooks/alert", JSON, b'{"alerts": [{"labels": {"x": "', b'"}}]}'),
    "login": ("/login", FORM, b"key=", b"&next=%2F"),
    "rollback-never-reads-its-body": (f"/v1/models/{MODEL}/rollback", JSON, b'{"x": "', b'"}'),
}


def assert_body_limit(answer: Answer) -> None:
    assert answer.status == 413, (answer.status, answer.body[:300])
    error = answer.error()
    assert error["type"] == "LimitError"
    assert error["limit"] == "serving.max_body_bytes"


def assert_still_serving(server: Server, watch: Watch) -> None:
    assert watch.health, "no /healthz probe finished"
    assert max(watch.health) < 1.0, f"/healthz took up to {max(watch.health):.2f}s"
    started = time.monotonic()
    assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("route", list(ROUTES))
def test_a_large_chunked_body_without_a_key_is_refused_while_it_streams(
    server: Server, route: str
) -> None:
    path, content_type, prefix, suffix = ROUTES[route]
    head = request_head(
        "POST", path, {"Content-Type": content_type, "Transfer-Encoding": "chunked"}
    )
    # warm up: the route's first answer may import or compile something
    exchange(server.port, head, chunked(prefix, 4096, suffix))
    with Watch(server) as watch:
        answer = exchange(server.port, head, chunked(prefix, BODY_BYTES, suffix))
    assert_body_limit(answer)
    assert answer.sent < 16 * MIB, f"the server read {answer.sent} bytes before answering"
    assert answer.seconds < 5.0
    assert watch.growth < RSS_BOUND, f"server RSS grew {watch.growth / MIB:.0f} MiB"
    assert_still_serving(server, watch)


@pytest.mark.parametrize("route", list(ROUTES))
def test_a_declared_content_length_over_the_limit_is_refused_before_reading_it(
    server: Server, route: str
) -> None:
    """Not a byte of the body is sent: the answer comes from the headers alone."""
    path, content_type, _, _ = ROUTES[route]
    head = request_head(
        "POST", path, {"Content-Type": content_type, "Content-Length": str(BODY_BYTES)}
    )
    answer = exchange(server.port, head, iter(()), timeout=5.0)
    assert_body_limit(answer)
    assert "exceeds serving.max_body_bytes" in answer.error()["message"]
    assert answer.sent == len(head)


def test_a_body_within_the_limit_still_reaches_the_route(server: Server) -> None:
    """Chunked or not, the route gets the body whole and answers as it always did."""
    path, content_type, prefix, suffix = ROUTES["login"]
    for framing in ("chunked", "length"):
        body = prefix + b"a" * 100_000 + suffix
        headers = {"Content-Type": content_type}
        if framing == "chunked":
            headers["Transfer-Encoding"] = "chunked"
            pieces = frames(body)
        else:
            headers["Content-Length"] = str(len(body))
            pieces = iter([body])
        answer = exchange(server.port, request_head("POST", path, headers), pieces)
        assert answer.status == 413, framing  # the login form's own 8 KiB limit, as before
        assert b"request too large" in answer.body
    texts = json.dumps({"texts": [f"{index} great food " * 400 for index in range(100)]})
    predict = exchange(
        server.port,
        request_head(
            "POST",
            f"/v1/models/{MODEL}/predict",
            {"Content-Type": JSON, "Transfer-Encoding": "chunked", **server.project.headers()},
        ),
        frames(texts.encode()),
    )
    assert predict.status == 200, predict.body[:300]
    assert len(json.loads(predict.body)["predictions"]) == 100


def test_a_client_that_keeps_streaming_after_its_413_is_cut_off(server: Server) -> None:
    """The 413 comes at once; the connection is left open for a client that sends its whole
    body before reading, and closed ``serving.idle_timeout`` after the answer if the body never
    ends, with the server's memory flat meanwhile."""
    path, content_type, prefix, _ = ROUTES["retrain"]
    head = request_head(
        "POST", path, {"Content-Type": content_type, "Transfer-Encoding": "chunked"}
    )
    frame = f"{PIECE:x}\r\n".encode() + b"a" * PIECE + b"\r\n"
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        sock.sendall(head + f"{len(prefix):x}\r\n".encode() + prefix + b"\r\n")
        with Watch(server) as watch:
            answered: float | None = None
            started = time.monotonic()
            while time.monotonic() - started < IDLE_TIMEOUT + 5:
                try:
                    sock.sendall(frame)  # never reads, never ends
                except (BrokenPipeError, ConnectionResetError):
                    break
                if answered is None and select.select([sock], [], [], 0)[0]:
                    answered = time.monotonic()
            else:
                raise AssertionError("the connection was never closed")
            cut = time.monotonic()
        assert answered is not None, "no 413 while streaming"
        assert answered - started < 2.0
        assert IDLE_TIMEOUT - 0.5 < cut - answered < IDLE_TIMEOUT + 2.0
        assert sock.recv(65536).startswith(b"HTTP/1.1 413")
    except ConnectionResetError:
        pass  # the reset may discard the answer the client never read: timing was checked
    finally:
        sock.close()
    assert watch.growth < RSS_BOUND, f"server RSS grew {watch.growth / MIB:.0f} MiB"
    assert_still_serving(server, watch)


@pytest.mark.parametrize("where", ["header", "url"])
def test_an_oversized_request_head_is_refused(server: Server, where: str) -> None:
    if where == "header":
        head, end = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ", b"\r\n\r\n"
    else:
        head, end = b"GET /healthz?q=", b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    pieces = iter([*(b"a" * PIECE for _ in range(BODY_BYTES // PIECE)), end])
    with Watch(server) as watch:
        answer = exchange(server.port, head, pieces)
    assert answer.status == 431, (answer.status, answer.body[:300])
    error = answer.error()
    assert (error["type"], error["limit"]) == ("LimitError", "serving.max_header_bytes")
    assert answer.sent < 16 * MIB, f"the server read {answer.sent} bytes of head"
    assert answer.seconds < 5.0
    assert watch.growth < RSS_BOUND, f"server RSS grew {watch.growth / MIB:.0f} MiB"
    assert_still_serving(server, watch)


def test_a_head_at_the_limit_is_served(server: Server) -> None:
    big = "a" * 60_000  # under the default 64 KiB head limit
    response = httpx.get(server.url + "/healthz", headers={"X-Big": big}, timeout=5)
    assert response.status_code == 200


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server hangs up within ``within`` seconds (what it sends is skipped)."""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
    return False


def test_idle_and_trickling_connections_are_closed(server: Server) -> None:
    idle = socket.create_connection(("127.0.0.1", server.port))
    trickling = socket.create_connection(("127.0.0.1", server.port))
    served: socket.socket | None = None
    try:
        started = time.monotonic()
        trickling.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        closed = False
        while time.monotonic() - started < IDLE_TIMEOUT + 3:
            try:
                trickling.sendall(b"a")  # a byte every 100 ms: never a complete head
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if _closed_by_server(trickling, 0.1):
                closed = True
                break
        assert closed, "a connection trickling its head was never closed"
        assert time.monotonic() - started < IDLE_TIMEOUT + 2
        assert _closed_by_server(idle, IDLE_TIMEOUT + 2), "an idle connection was never closed"
        # a keep-alive connection is closed once idle after its response, too
        served = socket.create_connection(("127.0.0.1", server.port))
        served.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        served.settimeout(5)
        assert served.recv(65536).startswith(b"HTTP/1.1 200")
        answered = time.monotonic()
        assert _closed_by_server(served, IDLE_TIMEOUT + 2)
        assert time.monotonic() - answered > IDLE_TIMEOUT - 0.5
    finally:
        for sock in (idle, trickling, served):
            if sock is not None:
                sock.close()


def test_connections_past_the_cap_are_answered_503_until_idle_ones_are_closed(
    server: Server,
) -> None:
    holders = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)
        response = httpx.get(server.url + "/healthz", timeout=5)
        assert response.status_code == 503
        # the idle connections are closed after serving.idle_timeout, and it serves again
        deadline = time.monotonic() + IDLE_TIMEOUT + 5
        while time.monotonic() < deadline:
            if httpx.get(server.url + "/healthz", timeout=5).status_code == 200:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("still 503 after the idle connections should have closed")
    finally:
        for sock in holders:
            sock.close()
