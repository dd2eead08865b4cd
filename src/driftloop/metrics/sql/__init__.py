"""The metric store on the shared relational database (SQLite WAL by default, PostgreSQL at scale).

Writes go to raw points and, in the same transaction, to 1-minute and 1-hour rollups (count,
sum, min, max and a log-bin sketch, see :mod:`driftloop.metrics.sketch`), so rollups are always up
to date, late points included. Queries over short, recent windows read raw points; long windows
(or windows older than the raw retention) read whole hours from the hour rollups, the remaining
whole minutes from the minute rollups and the partial minutes at the edges from raw points, so
count, sum, min, max and avg stay exact, and percentiles, merged from the same bins either way,
are within the sketch's 0.5 % relative accuracy. A 7-day window reads about 168 hour rows and at
most 118 minute rows per series instead of 10,080 minute rows.

The SQL is what SQLite (>= 3.24) and PostgreSQL both speak: no JSON operators (tags are canonical
JSON on the series row, filtered and grouped in Python), ``ON CONFLICT`` for upserts and for
skipping points stored before (a batch with some stored ``point_id`` s is redone with an indexed
lookup of them), and a concurrent writer that wins a race on a unique key makes the loser retry.

Writing is built for throughput: a batch is read as columns (:class:`PointBatch`), every per-point
step runs in numpy or C builtins, and the write statements are compiled once per dialect and
handed to the driver directly (:mod:`.bulk`).

One module per job:

- :mod:`.store`: :class:`SqlMetricStore`, the facade that validates, retries and reads;
- :mod:`.catalog`: series ids by name and tags;
- :mod:`.bulk`: the write statements compiled per dialect and run in bulk;
- :mod:`.rollups`: the minute and hour rollups kept in step with every write, and the one-time
  backfill of the hour rollups;
- :mod:`.planning`: which rollups and raw ranges a window reads, and merging them into
  aggregates, quantiles and series buckets;
- :mod:`.retention`: purging past the horizons, and the horizons themselves;
- :mod:`.rows`: the time units, chunking and error boundary they share.
"""

from driftloop.metrics.sql.planning import Resolution
from driftloop.metrics.sql.retention import PurgeResult
from driftloop.metrics.sql.rows import HOUR, MINUTE
from driftloop.metrics.sql.store import SqlMetricStore

__all__ = ["HOUR", "MINUTE", "PurgeResult", "Resolution", "SqlMetricStore"]
