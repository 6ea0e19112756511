"""Learned parts of the variational models: DLWnet, the weight network of DLW (docs/science.md).

Importing this package imports torch; :mod:`pipeline` itself never does.
"""

from pipeline.nets.dlwnet import WEIGHT_FLOOR, DLWNet, normalise_weights

__all__ = ["WEIGHT_FLOOR", "DLWNet", "normalise_weights"]
