"""The worker that runs retrain jobs (``driftloop worker``, and inside ``driftloop up``)."""

from __future__ import annotations

import logging
import os
import socket
import uuid

from driftloop.background import BackgroundLoop
from driftloop.pipeline.queue import Job, JobQueue
from driftloop.pipeline.retry import RetryPolicy
from driftloop.pipeline.runner import RetrainPipeline

logger = logging.getLogger("driftloop.pipeline")


class RetrainWorker:
    """Claims jobs from the queue, one at a time, and runs them through the pipeline; between
    jobs, the retry policy (when given) queues the retries that are due."""

    def __init__(
        self,
        queue: JobQueue,
        pipeline: RetrainPipeline,
        *,
        name: str | None = None,
        poll_interval: float = 1.0,
        stale_after: float = 60.0,
        retries: RetryPolicy | None = None,
    ) -> None:
        self.queue = queue
        self.pipeline = pipeline
        self.retries = retries
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.poll_interval = poll_interval
        self.stale_after = stale_after
        self._loop = BackgroundLoop(
            self._poll,
            poll_interval,
            name="driftloop-worker",
            logger=logger,
            failure="retrain worker loop error",
        )

    def run_once(self) -> Job | None:
        """Queue the retries that are due, then claim and run one job; None when nothing is
        waiting."""
        if self.retries is not None:
            try:
                self.retries.run_once()
            except Exception:  # a store blip must not keep the worker from its jobs
                logger.exception("the retry policy failed; jobs still run")
        job = self.queue.claim(self.name, stale_after=self.stale_after)
        if job is None:
            return None
        logger.info("worker %s runs job %s for %s", self.name, job.job_id[:8], job.model)
        return self.pipeline.run(job, self.name)

    def _poll(self) -> bool:
        """One job if one waits; True when it ran one (another may wait: no pause)."""
        return self.run_once() is not None

    def run_forever(self) -> None:
        """Run jobs in this thread until :meth:`stop`, polling every ``poll_interval``."""
        self._loop.run()

    def start(self) -> None:
        self._loop.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._loop.stop(timeout)
