"""Write the training rows of a dataset snapshot to a CSV, for notebooks/train.ipynb.

    python scripts/fetch_training_data.py MODEL [--snapshot ID] [--output data/train.csv]

The snapshot comes from driftloop's storage (``storage`` in driftloop.yaml, or the
DRIFTLOOP_STORAGE variable): the one named by --snapshot, else the newest snapshot of the
model's dataset (``models.MODEL.data``). The rows driftloop's retrain pipeline holds out to gate
a new version against production (``split_holdout`` with ``pipeline.holdout_fraction`` and
``pipeline.seed``) are left out, so the gate judges the new model on rows it never saw.

In GitHub Actions the dataset and snapshot id are also written to $GITHUB_OUTPUT, for
``driftloop models register --dataset ... --data ...``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from driftloop.config import load_config
from driftloop.errors import DriftloopError
from driftloop.storage.datasets import DatasetStore, ensure_dataset
from driftloop.trainers.evaluation import split_holdout

REQUIRED_IN_ACTIONS = ("DRIFTLOOP_STORE", "DRIFTLOOP_STORAGE")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("model", help="model name under 'models:' in driftloop.yaml")
    parser.add_argument("--snapshot", default="", help="snapshot id (default: the newest)")
    parser.add_argument("--output", default="data/train.csv", help="CSV file to write")
    parser.add_argument("--config", default=None, help="driftloop.yaml (default: found here)")
    args = parser.parse_args(argv)

    if os.environ.get("GITHUB_ACTIONS") == "true":
        missing = [name for name in REQUIRED_IN_ACTIONS if not os.environ.get(name)]
        if missing:
            print(f"error: set the repository secrets {', '.join(missing)} (driftloop's store "
                  "and storage) for this workflow", file=sys.stderr)
            return 2
    try:
        config = load_config(args.config)
        model_config = config.models.get(args.model)
        if model_config is None:
            print(f"error: no model {args.model!r} in driftloop.yaml; configured: "
                  f"{sorted(config.models)}", file=sys.stderr)
            return 2
        store = DatasetStore.from_config(config)
        if args.snapshot:
            snapshot = store.get(model_config.data, args.snapshot)
        else:
            snapshot = ensure_dataset(config, model_config.data)
        frame = store.load(snapshot)
        train, held_out = split_holdout(
            frame, model_config.label_column, config.pipeline.holdout_fraction,
            seed=config.pipeline.seed,
        )
    except DriftloopError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    train.to_csv(output, index=False)
    print(f"{snapshot.dataset} snapshot {snapshot.snapshot_id}: wrote {len(train)} training "
          f"rows to {output} ({len(held_out)} held out for driftloop's gate)")
    github_output = os.environ.get("GITHUB_OUTPUT")
    if github_output:
        with open(github_output, "a", encoding="utf-8") as lines:
            lines.write(f"dataset={snapshot.dataset}\nsnapshot_id={snapshot.snapshot_id}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
