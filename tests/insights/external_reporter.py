"""A model served elsewhere, for the tests: its own process, its own model, reporting to
driftloop over HTTP only (``$DRIFTLOOP_KEY``, an ``insights`` key).

Its model scores a churn record with a fixed logistic rule. It sends ``COUNT`` predictions'
insights to ``POST /v1/insights`` (``model_confidence`` and ``latency_ms``, each point with its
own id, in batches of 50, the first batch sent twice as a client retry would) and logs the same
predictions at ``POST /v1/models/MODEL/predictions`` (ids ``ext-<i>``, the first batch twice),
then prints one JSON line: what the server answered.

    python external_reporter.py DRIFTLOOP_URL MODEL COUNT
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from typing import Any

import httpx

BATCH = 50


def predict(record: dict[str, Any]) -> tuple[str, float]:
    """The service's own model: churn when the logistic score of tenure and plan is over 0.5."""
    score = 1 / (1 + math.exp(0.15 * (record["tenure"] - 24) - (record["plan"] == "basic")))
    return ("churn", score) if score >= 0.5 else ("stay", 1 - score)


def main() -> None:
    url, model, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = random.Random(11)
    now = time.time()
    records = [
        {"tenure": round(rng.gauss(24, 8), 2), "plan": rng.choice(["basic", "pro", "team"])}
        for _ in range(count)
    ]
    answers = [predict(record) for record in records]
    points = [
        {
            "name": name,
            "value": value,
            "timestamp": now - count + i,
            "tags": {"model": model, "version": "1", "class": label},
            "point_id": f"{model}-{name}-{i}",
        }
        for i, (label, confidence) in enumerate(answers)
        for name, value in (("model_confidence", confidence), ("latency_ms", 2.0 + i % 7))
    ]
    logged = [
        {"id": f"ext-{i}", "input": record, "class": label, "confidence": confidence}
        for i, (record, (label, confidence)) in enumerate(zip(records, answers, strict=True))
    ]
    summary = {"insights": 0, "logged": 0, "duplicates": 0}
    headers = {"Authorization": f"Bearer {os.environ['DRIFTLOOP_KEY']}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        batches = [points[i : i + BATCH] for i in range(0, len(points), BATCH)]
        for batch in [batches[0], *batches]:
            answer = client.post("/v1/insights", json={"points": batch})
            answer.raise_for_status()
            summary["insights"] += answer.json()["accepted"]
        chunks = [logged[i : i + BATCH] for i in range(0, len(logged), BATCH)]
        for chunk in [chunks[0], *chunks]:
            answer = client.post(
                f"/v1/models/{model}/predictions", json={"version": 1, "predictions": chunk}
            )
            answer.raise_for_status()
            summary["logged"] += answer.json()["accepted"]
            summary["duplicates"] += answer.json()["duplicates"]
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
