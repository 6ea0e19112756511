"""Learned parts of the variational models (DESIGN §2): DLWnet, the weight network of DLW.

Importing this package imports torch; :mod:`pipeline` itself never does.
"""

from pipeline.nets.dlwnet import WEIGHT_FLOOR, DLWNet, normalise_weights

__all__ = ["WEIGHT_FLOOR", "DLWNet", "normalise_weights"]
