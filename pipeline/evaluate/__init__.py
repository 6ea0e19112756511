"""Metrics, weighting baselines and the transfer matrix."""
