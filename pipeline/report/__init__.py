"""The report stage's library: ``reports/results.parquet`` + ``reports/gallery.parquet`` →
``reports/leaderboard.parquet``, ``reports/metrics.json`` and ``reports/index.html``.

- :mod:`pipeline.report.stats`: t-intervals, paired tests (t, exact sign-flip), Holm.
- :mod:`pipeline.report.leaderboard`: the leaderboard table and the headline metrics.
- :mod:`pipeline.report.charts`: transfer heat map, MPSNR bars, AUC vs gain (inline PNG).
- :mod:`pipeline.report.gallery`: the image gallery (inline PNG from a minimal encoder).
- :mod:`pipeline.report.html`: the self-contained page.
- :mod:`pipeline.report.build`: reading the inputs, :func:`build_report`, :func:`write_report`.

Nothing is imported here, so importing the package stays cheap.
"""
