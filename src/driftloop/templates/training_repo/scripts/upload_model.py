"""Upload the trained model to driftloop, which gates, deploys and verifies it.

    python scripts/upload_model.py MODEL output --snapshot ID [--run-id ID]

Packs OUTPUT/model/ (and OUTPUT/evaluation.json) and sends it to driftloop's API
(``POST /v1/models/MODEL/versions``, the key in $API_KEY, a key with the ``register`` scope, at
$API_URL) with its SHA-256, the snapshot it trained on, the id the run was dispatched with
(--run-id: a retrain job waiting for this run takes it; without one, driftloop opens a job)
and, in GitHub Actions, the repository, commit and run that made it. Nothing is deployed here:
driftloop's retrain pipeline gates the candidate, deploys it, verifies it and rolls it back
if the monitors do not recover.

In GitHub Actions the version and the job are also written to $GITHUB_OUTPUT.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from driftloop.client import Client
from driftloop.errors import DriftloopError

REQUIRED = ("API_URL", "API_KEY")


def training_code() -> dict[str, str]:
    """The repository, commit and run of this GitHub Actions run (empty elsewhere)."""
    environ = os.environ
    source = {
        "repo": environ.get("GITHUB_REPOSITORY", ""),
        "commit": environ.get("GITHUB_SHA", ""),
        "run_id": "",
    }
    if environ.get("GITHUB_RUN_ID"):
        source["run_id"] = f"{environ['GITHUB_RUN_ID']}-{environ.get('GITHUB_RUN_ATTEMPT', '1')}"
    return {key: value for key, value in source.items() if value}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("model", help="model name under 'models:' in driftloop.yaml")
    parser.add_argument("output", help="the notebook's output_dir: model/ and evaluation.json")
    parser.add_argument("--snapshot", required=True, help="the snapshot it trained on")
    parser.add_argument("--run-id", default="", help="the incident_id input of the run")
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
    evaluation = output / "evaluation.json"
    try:
        with Client(os.environ["API_URL"], os.environ["API_KEY"], timeout=600) as client:
            uploaded = client.upload_version(
                args.model,
                output / "model",
                snapshot_id=args.snapshot,
                evaluation=evaluation if evaluation.is_file() else None,
                run_id=args.run_id or None,
                trainer="github-actions",
                source=training_code(),
            )
    except DriftloopError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    how = "the retrain job waiting for this run" if uploaded.attached else "a new retrain job"
    print(
        f"uploaded {uploaded.model} v{uploaded.version}: {how} ({uploaded.job_id[:8]}) "
        "gates, deploys and verifies it"
    )
    github_output = os.environ.get("GITHUB_OUTPUT")
    if github_output:
        with open(github_output, "a", encoding="utf-8") as lines:
            lines.write(f"version={uploaded.version}\njob_id={uploaded.job_id}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
