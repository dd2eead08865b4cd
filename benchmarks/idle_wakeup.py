"""The floor under "overhead per request at 1 client": how much a server that sat idle while its
model ran takes to answer afterwards, as a function of the model call's length.

A plain FastAPI endpoint (the benchmark's "plain FastAPI" server, with no model) whose "model"
is ``time.sleep(ms)`` in FastAPI's thread pool, measured like the serving benchmark: one
closed-loop client, overhead = latency - the ``Server-Timing`` model time of the same request,
median. Whatever grows with ``ms`` here is not serving work (there is none besides the sleep):
it is what the machine charges for waking an idle process, which a model of that length pays on
any server.

    .venv/bin/python benchmarks/idle_wakeup.py [--seconds 3] [--markdown]
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


def serve(port: int) -> None:
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/predict/{milliseconds}")
    def predict(milliseconds: float, response: Response) -> dict[str, str]:
        started = time.perf_counter()
        time.sleep(milliseconds / 1000.0)
        response.headers["Server-Timing"] = \
            f"model;dur={(time.perf_counter() - started) * 1000:.3f}"
        return {"class": "Food Positive"}

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per call length")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args()
    console = Console(stderr=args.markdown)
    body = [json.dumps({"texts": ["a warm sweater, true to size"]}).encode()]
    port = free_port()
    rows: list[tuple[float, int, float]] = []
    with tempfile.TemporaryDirectory(prefix="driftloop-wakeup-") as temporary, ServerProcess(
        "plain FastAPI", [sys.executable, __file__, "serve", str(port)], port, "/healthz",
        log=Path(temporary) / "server.log",
    ):
        for milliseconds in CALL_MS:
            run_load(port, f"/predict/{milliseconds:g}", body, clients=1, texts_per_request=1,
                     duration=0.5, max_requests=200)  # warm-up
            result = run_load(port, f"/predict/{milliseconds:g}", body, clients=1,
                              texts_per_request=1, duration=args.seconds, max_requests=5_000)
            overhead = result.in_request_overhead_ms()
            assert overhead is not None, "the server sent no Server-Timing header"
            rows.append((milliseconds, result.ok, overhead))
            console.print(f"{milliseconds:g} ms call: overhead {overhead:.3f} ms "
                          f"over {result.ok} requests")
    shortest = rows[0][2]
    if args.markdown:
        print(describe_machine().markdown())
        print()
        print("| model call (sleep) | requests | overhead per request, median "
              "| vs the 0.5 ms call |")
        print("|---|---|---|---|")
        for milliseconds, requests, overhead in rows:
            print(f"| {milliseconds:g} ms | {requests:,} | {overhead:.2f} ms | "
                  f"{overhead / shortest:.2f}x |")
        return
    table = Table(title="plain FastAPI, a model that only sleeps: overhead at 1 client")
    for column in ("model call (sleep)", "requests", "overhead (median)", "vs 0.5 ms"):
        table.add_column(column, justify="right")
    for milliseconds, requests, overhead in rows:
        table.add_row(f"{milliseconds:g} ms", f"{requests:,}", f"{overhead:.2f} ms",
                      f"{overhead / shortest:.2f}x")
    console.print(table)


if __name__ == "__main__":
    main()
