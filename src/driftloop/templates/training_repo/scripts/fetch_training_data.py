"""Write the training rows of a dataset snapshot to a CSV, for notebooks/train.ipynb.

    python scripts/fetch_training_data.py MODEL [--snapshot ID] [--output data/train.csv]

The rows come from driftloop's API (``GET /v1/models/MODEL/training-data``, with the key in
$API_KEY, a key with the ``register`` scope, at $API_URL): the snapshot named by --snapshot,
else the newest snapshot of the model's dataset, without the rows driftloop's retrain pipeline
holds out to gate the new version against production, so the gate judges the new model on rows
it never saw. No database or storage credentials are needed.

In GitHub Actions the dataset and snapshot id are also written to $GITHUB_OUTPUT, for the
upload step (scripts/upload_model.py --snapshot ...).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from driftloop.client import Client
from driftloop.errors import DriftloopError

REQUIRED = ("API_URL", "API_KEY")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("model", help="model name under 'models:' in driftloop.yaml")
    parser.add_argument("--snapshot", default="", help="snapshot id (default: the newest)")
    parser.add_argument("--output", default="data/train.csv", help="CSV file to write")
    args = parser.parse_args(argv)

    missing = [name for name in REQUIRED if not os.environ.get(name)]
    if missing:
        print(
            f"error: set {', '.join(missing)} (in GitHub Actions: the repository secrets "
            "DRIFTLOOP_API_URL and DRIFTLOOP_API_KEY, a key with the register scope)",
            file=sys.stderr,
        )
        return 2
    output = Path(args.output)
    try:
        with Client(os.environ["API_URL"], os.environ["API_KEY"], timeout=300) as client:
            dataset, snapshot_id = client.training_data(args.model, output, args.snapshot or None)
    except DriftloopError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    print(
        f"{dataset} snapshot {snapshot_id}: wrote the training rows to {output} (the rows "
        "driftloop's gate holds out are not among them)"
    )
    github_output = os.environ.get("GITHUB_OUTPUT")
    if github_output:
        with open(github_output, "a", encoding="utf-8") as lines:
            lines.write(f"dataset={dataset}\nsnapshot_id={snapshot_id}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
