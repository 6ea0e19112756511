"""DLW bilevel training (docs/science.md) and its Ray Tune driver (docs/architecture.md).

=====================  ======================================================================
module                 purpose
=====================  ======================================================================
``params``             the ``train`` section of params.yaml (no torch import)
``data``               training batches drawn on the fly, the fixed validation set
``bilevel``            upper loss, one bilevel step, validation MPSNR (pure torch)
``trainer``            a trial's state: net, optimiser, schedule, history; one epoch at a time
``checkpoint``         ``torch.load(weights_only=True)`` checkpoints with clear errors
``trainable``          the Ray Tune function trainable (report + checkpoint per epoch)
``callback``           the driver-side MLflow logger (one run per trial, reused on resume)
``driver``             Ray set-up, experiment naming, fit or resume, results per trial
``outputs``            ``models/dlw``, ``reports/train_metrics.json``, training curves
``figure``             the picture of a predicted weight map
=====================  ======================================================================

Only ``params`` is imported by :mod:`pipeline.config`; the rest import torch, Ray or MLflow.
"""
