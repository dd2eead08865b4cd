"""A service that serves its own model, as a separate process: it logs its predictions with
``driftloop.Client.log_predictions`` (#19 part 2), each batch on a new connection (so either
worker of ``driftloop serve --workers 2`` takes it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ELSEWHERE = """
import json, sys
from driftloop.client import Client, LoggedPrediction

url, key, model, labels = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])


def predict(text):  # this service's own model
    return labels[len(text.split()) % len(labels)], 0.5 + 0.05 * (len(text) % 10)


logged = []
for batch in range(6):
    texts = [f"review {batch} number {i} " + "word " * i for i in range(2)]
    predictions = []
    for i, text in enumerate(texts):
        label, confidence = predict(text)
        predictions.append(LoggedPrediction(f"flask-{batch}-{i}", text, label=label,
                                            confidence=confidence))
        logged.append({"id": f"flask-{batch}-{i}", "class": label})
    with Client(url, key) as client:  # a new connection each time: either worker
        result = client.log_predictions(model, predictions, version=41)
        assert (result.accepted, result.duplicates) == (2, 0), result
print(json.dumps(logged))
"""


def log_elsewhere(
    url: str, insights_key: str, model: str, labels: list[str], directory: Path
) -> list[dict[str, str]]:
    """Run the service; returns what it logged: ``[{"id", "class"}, ...]`` (12 predictions of
    version 41)."""
    script = directory / "elsewhere.py"
    script.write_text(ELSEWHERE)
    done = subprocess.run(
        [sys.executable, str(script), url, insights_key, model, json.dumps(labels)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    logged: list[dict[str, str]] = json.loads(done.stdout)
    return logged
