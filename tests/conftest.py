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


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small tensors: a second intra-op thread only adds synchronisation and contention on the
    shared cores. Modules opt in with ``pytestmark = pytest.mark.usefixtures(...)``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_terminal_summary(terminalreporter):
    """One line on the real-browser checks of the report page (tests/browser.py), if any ran."""
    import sys

    browser = sys.modules.get("browser")
    line = browser.summary_line() if browser is not None else None
    if line:
        terminalreporter.write_line(line)
