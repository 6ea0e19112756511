"""Noise models: pure functions ``(x, rng, **params) -> (y, info)``.

``x`` is a clean image (C, H, W) with values in [0, 1]; ``y`` the noisy image (float32, not
clipped, as in the test protocol); ``info`` holds what only an oracle knows: ``sigma`` (the true
per-pixel Gaussian standard deviation, (C, H, W) float32), ``mask`` (corrupted pixels: stripes,
dead lines, impulses, (C, H, W) bool) and ``draws`` (the random choices made, JSON-able).
The registry of names is :mod:`pipeline.degrade.registry`.
"""
