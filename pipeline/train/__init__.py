"""The one Ray Tune runner of every learned method (docs/architecture.md).

=====================  ======================================================================
module                 purpose
=====================  ======================================================================
``data``               clean tiles, the dataset hash, random patches, noisy batches
``trainable``          the Ray Tune function trainable (report + checkpoint per epoch)
``callback``           the driver-side MLflow logger (one run per trial, reused on resume)
``runner``             Ray set-up, experiment naming, fit or resume, results per trial
``outputs``            ``models/<method>``, ``reports/train/<method>/``, figures in MLflow
=====================  ======================================================================

No method's name appears here: a method is a :class:`pipeline.methods.base.Method` from
:mod:`pipeline.methods.registry`. Importing these modules imports torch, Ray or MLflow only
inside the functions that need them (``callback`` imports Ray).
"""
