import os

import pytest

# No telemetry from any engine during tests, whichever way pytest was started.
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture
def flat():
    """A large flat image: noise statistics are measured on it without image content."""
    import numpy as np

    return np.full((31, 128, 128), 0.5)
