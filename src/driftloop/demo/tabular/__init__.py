"""The tabular scenario of ``driftloop demo --scenario tabular``: real image-segment records
(``segment.csv.gz``, see ``SOURCES.md``), a user-written predictor and trainer (``example/``,
installed into the demo project as a plug-in package) and the drift split."""
