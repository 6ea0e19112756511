"""dlw-bench: learned variational image restoration under heterogeneous noise.

Importing :mod:`pipeline` is cheap: heavy engines (torch, Ray, MLflow) are imported inside the
functions that use them, and registries are explicit dictionaries, never folder scans.
"""

__version__ = "0.1.0"
