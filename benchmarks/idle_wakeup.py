"""The floor under "overhead per request at 1 client": how much a server that waited while its
model ran takes to answer afterwards, as a function of the model call's length.

A plain FastAPI server (no driftloop) whose "model" is a wait of ``ms`` milliseconds, measured
like the serving benchmark: one closed-loop client, overhead = latency - the ``Server-Timing``
model time of the same request, median. Three ways to wait, one endpoint each:

* ``thread``: ``time.sleep`` in FastAPI's thread pool, as a user writes a blocking model call
  (the event loop sleeps in ``epoll`` until the thread hands the result back);
* ``inline``: ``time.sleep`` on the event loop itself (no thread hand-over);
* ``spin``: a busy loop on the event loop (the server process never goes idle).

There is no serving work besides the wait, so whatever grows with ``ms`` is what the machine
charges for the wait: on a virtual machine whose idle virtual cores halt at once, the client,
idle for the whole call, pays for being woken even when the server never sleeps (``spin``).

    .venv/bin/python benchmarks/idle_wakeup.py [--seconds 2] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from fastapi import Response
from rich.console import Console
from rich.table import Table

from environment import ServerProcess, describe_machine, free_port, run_load

CALL_MS = (0.5, 2.0, 5.0, 10.0, 20.0, 40.0)
WAITS = ("thread", "inline", "spin")


def _timed(response: Response, started: float) -> dict[str, str]:
    response.headers["Server-Timing"] = f"model;dur={(time.perf_counter() - started) * 1000:.3f}"
    return {"class": "Food Positive"}


def serve(port: int) -> None:
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/predict/thread/{milliseconds}")
    def thread(milliseconds: float, response: Response) -> dict[str, str]:
        started = time.perf_counter()
        time.sleep(milliseconds / 1000.0)
        return _timed(response, started)

    @app.post("/predict/inline/{milliseconds}")
    async def inline(milliseconds: float, response: Response) -> dict[str, str]:
        started = time.perf_counter()
        time.sleep(milliseconds / 1000.0)  # blocks the loop on purpose
        return _timed(response, started)

    @app.post("/predict/spin/{milliseconds}")
    async def spin(milliseconds: float, response: Response) -> dict[str, str]:
        started = time.perf_counter()
        while time.perf_counter() - started < milliseconds / 1000.0:
            pass
        return _timed(response, started)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per call length and wait")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args()
    console = Console(stderr=args.markdown)
    body = [json.dumps({"texts": ["a warm sweater, true to size"]}).encode()]
    port = free_port()
    overheads: dict[tuple[str, float], float] = {}
    with (
        tempfile.TemporaryDirectory(prefix="driftloop-wakeup-") as temporary,
        ServerProcess(
            "plain FastAPI",
            [sys.executable, __file__, "serve", str(port)],
            port,
            "/healthz",
            log=Path(temporary) / "server.log",
        ),
    ):
        for milliseconds in CALL_MS:
            for wait in WAITS:
                path = f"/predict/{wait}/{milliseconds:g}"
                run_load(
                    port, path, body, clients=1, texts_per_request=1, duration=0.3, max_requests=100
                )  # warm-up
                result = run_load(
                    port,
                    path,
                    body,
                    clients=1,
                    texts_per_request=1,
                    duration=args.seconds,
                    max_requests=5_000,
                )
                overhead = result.in_request_overhead_ms()
                assert overhead is not None, "the server sent no Server-Timing header"
                overheads[wait, milliseconds] = overhead
                console.print(
                    f"{milliseconds:g} ms call, {wait}: overhead {overhead:.3f} ms "
                    f"over {result.ok} requests"
                )
    header = ["model call", *(f"{wait}: overhead (median)" for wait in WAITS)]
    rows = [[f"{ms:g} ms", *(f"{overheads[wait, ms]:.2f} ms" for wait in WAITS)] for ms in CALL_MS]
    if args.markdown:
        print(describe_machine().markdown())
        print()
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    table = Table(title="plain FastAPI, a model that only waits: overhead at 1 client")
    for column in header:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


if __name__ == "__main__":
    main()
