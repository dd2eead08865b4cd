"""What the benchmarks ran on, read from /proc and the installed packages, and the helpers the
serving and memory benchmarks share: a loopback-only HTTP load generator, a server process, and
a trained project."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import platform
import socket
import statistics
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "driftloop",
    "fastapi",
    "starlette",
    "uvicorn",
    "pydantic",
    "numpy",
    "scikit-learn",
    "sqlalchemy",
    "torch",
    "transformers",
    "bentoml",
)
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class MachineDescription:
    cpu_model: str
    cores: int
    memory_gib: float
    load_average: tuple[float, float, float]
    python: str
    system: str
    packages: dict[str, str]

    def markdown(self) -> str:
        versions = ", ".join(f"{name} {version}" for name, version in self.packages.items())
        load = ", ".join(f"{x:.2f}" for x in self.load_average)
        return (
            f"- CPU: {self.cpu_model}, {self.cores} cores; memory {self.memory_gib:.1f} GiB; "
            f"load average at start {load}\n"
            f"- {self.system}; Python {self.python}\n"
            f"- packages: {versions}"
        )


def describe_machine() -> MachineDescription:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = 0.0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) / 1024 / 1024
    packages = {}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            packages[name] = metadata.version(name)
    return MachineDescription(
        cpu,
        os.cpu_count() or 0,
        memory,
        os.getloadavg(),
        platform.python_version(),
        f"{platform.system()} {platform.release()}",
        packages,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


# --- the load generator ------------------------------------------------------------------


@dataclass
class LoadResult:
    """One closed-loop run: ``clients`` connections, each sending its next request when the
    previous answer is in."""

    clients: int
    texts_per_request: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    model_ms: list[float] = field(default_factory=list)
    """Per request (aligned with ``latencies_ms``), the server's ``Server-Timing: model;dur=``
    (NaN where the answer carries none)."""

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def rejected(self) -> int:
        return self.statuses.get(503, 0)

    @property
    def failed(self) -> int:
        return self.requests - self.ok

    @property
    def ok_per_second(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    @property
    def texts_per_second(self) -> float:
        return self.ok_per_second * self.texts_per_request

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def in_request_overhead_ms(self) -> float | None:
        """Median over requests of (latency - the model time the server reported for that very
        request): what serving adds, free of the model's own run-to-run spread."""
        pairs = [
            latency - model
            for latency, model in zip(self.latencies_ms, self.model_ms, strict=True)
            if model == model
        ]
        return statistics.median(pairs) if pairs else None

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")

    @property
    def p99(self) -> float:
        return self.percentile(0.99)


def server_timing(value: str | None, metric: str = "model") -> float:
    """``dur`` of ``metric`` in a ``Server-Timing`` header value (NaN when absent)."""
    for part in (value or "").split(","):
        name, _, parameters = part.strip().partition(";")
        if name == metric:
            for parameter in parameters.split(";"):
                key, _, number = parameter.strip().partition("=")
                if key == "dur":
                    return float(number)
    return math.nan


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, float]:
    """The status and the ``Server-Timing`` model time of one response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {
        k.strip().lower(): v.strip()
        for k, _, v in (line.partition(":") for line in lines[1:] if line)
    }
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status, server_timing(headers.get("server-timing"))


async def _closed_loop(
    port: int,
    path: str,
    bodies: Sequence[bytes],
    headers: dict[str, str],
    clients: int,
    texts_per_request: int,
    duration: float,
    max_requests: int,
) -> LoadResult:
    result = LoadResult(clients, texts_per_request, 0.0)
    sent = 0
    deadline = time.perf_counter() + duration
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())

    async def client(number: int) -> None:
        nonlocal sent
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        index = number
        try:
            while time.perf_counter() < deadline and sent < max_requests:
                sent += 1
                body = bodies[index % len(bodies)]
                index += clients
                request = (
                    f"POST {path} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                    f"{extra}\r\n"
                ).encode() + body
                started = time.perf_counter()
                writer.write(request)
                try:
                    status, model_ms = await _read_response(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    status, model_ms = -1, math.nan
                result.latencies_ms.append((time.perf_counter() - started) * 1000)
                result.model_ms.append(model_ms)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                if status == -1:
                    writer.close()
                    reader, writer = await asyncio.open_connection(LOOPBACK, port)
        finally:
            writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    result.seconds = time.perf_counter() - began
    return result


def run_load(
    port: int,
    path: str,
    bodies: Sequence[bytes],
    *,
    clients: int,
    texts_per_request: int,
    duration: float,
    max_requests: int,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    """Closed-loop load on ``127.0.0.1:port`` (never anywhere else), bounded by ``duration``
    seconds and ``max_requests``; HTTP/1.1 keep-alive, one connection per client."""
    return asyncio.run(
        _closed_loop(
            port, path, bodies, headers or {}, clients, texts_per_request, duration, max_requests
        )
    )


# --- server processes --------------------------------------------------------------------


@dataclass
class ServerProcess:
    """A server started as a child process; stopped (SIGTERM, then SIGKILL) on exit."""

    name: str
    command: list[str]
    port: int
    ready_path: str
    cwd: Path | None = None
    env: dict[str, str] | None = None
    log: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServerProcess:
        output = self.log.open("wb") if self.log is not None else subprocess.DEVNULL
        self.process = subprocess.Popen(
            self.command, cwd=self.cwd, env=self.env, stdout=output, stderr=subprocess.STDOUT
        )
        self._wait_ready(120.0)
        return self

    def _wait_ready(self, timeout: float) -> None:
        import http.client

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                break
            with contextlib.suppress(OSError, http.client.HTTPException):
                connection = http.client.HTTPConnection(LOOPBACK, self.port, timeout=2)
                connection.request("GET", self.ready_path)
                if connection.getresponse().status == 200:
                    return
            time.sleep(0.2)
        log = self.log.read_text(errors="replace")[-3000:] if self.log is not None else ""
        self.__exit__()
        raise RuntimeError(f"{self.name} did not become ready on port {self.port}:\n{log}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def __exit__(self, *exc: object) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=20)


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, []))
    return found


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of one process in KiB, from /proc/<pid>/status; (0, 0) once gone."""
    rss = peak = 0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1])
    return rss, peak


@contextlib.contextmanager
def timed(label: str, timings: dict[str, float]) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[label] = time.perf_counter() - started
