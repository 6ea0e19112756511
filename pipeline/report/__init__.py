"""The report stage's library: ``reports/results.parquet`` + ``reports/gallery.parquet`` →
``reports/leaderboard.parquet`` (and ``.csv``), ``reports/metrics.json``, ``reports/index.html``,
``reports/tables/`` and ``reports/figures/page/``.

- :mod:`pipeline.report.stats`: t-intervals, paired tests (t, exact sign-flip), Holm.
- :mod:`pipeline.report.leaderboard`: the leaderboard table and the headline metrics.
- :mod:`pipeline.report.overview`: every learned part × task and case (paired gains over the
  reference with intervals and Holm), the ranking and the generated headline sentences.
- :mod:`pipeline.report.charts`: transfer heat map, MPSNR bars, AUC vs gain (PNG bytes).
- :mod:`pipeline.report.gallery`: the image gallery's strips (PNG through Pillow).
- :mod:`pipeline.report.images`: PNG encoding and the page's image store (inline or files).
- :mod:`pipeline.report.view` and :mod:`pipeline.report.page`: the page's tables as view models.
- :mod:`pipeline.report.sections`: the ``Section`` a method adds (``Method.report_sections``).
- :mod:`pipeline.report.render`: the Jinja2 templates of ``templates/`` (autoescaped).
- :mod:`pipeline.report.export`: every table as CSV and LaTeX beside the page.
- :mod:`pipeline.report.build`: reading the inputs, :func:`build_report`, :func:`write_report`.

Nothing is imported here, so importing the package stays cheap.
"""
