"""The Ray session of the train and evaluate stages, and the check that what a trial or task
asks for exists.

Ray queues a task whose resources no node offers and waits for the cluster to grow: on a fixed
machine that is a silent hang (``evaluate.cpu: 64`` on a laptop, ``train.gpu: 1`` on a CPU-only
host). :func:`ray_session` therefore compares each request with the nodes once Ray is up and
stops at once, naming the parameter and what the largest node offers. One task or trial runs
on one node, so the comparison is per node, not with the cluster's total.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping

__all__ = ["ResourceError", "check_device", "check_resources", "node_resources", "ray_session"]

log = logging.getLogger(__name__)


class ResourceError(ValueError):
    """A parameter asks for more than any node of the Ray cluster (or this machine) offers."""


# Parameter key → (Ray resource name, amount per task or trial).
Needs = Mapping[str, tuple[str, float]]


def node_resources() -> list[dict[str, float]]:
    """The resources of each live node of the connected Ray cluster."""
    import ray

    return [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive", False)]


def check_resources(needs: Needs, nodes: list[dict[str, float]], where: str) -> None:
    """Raise :class:`ResourceError` unless one node offers every amount of ``needs`` at once.

    ``where`` says which Ray this is (shown in the message)."""
    wanted = {key: (res, float(amount)) for key, (res, amount) in needs.items() if amount > 0}
    if not wanted or any(
        all(node.get(res, 0.0) >= amount for res, amount in wanted.values()) for node in nodes
    ):
        return

    def largest(res: str) -> float:
        return max((node.get(res, 0.0) for node in nodes), default=0.0)

    offered = ", ".join(f"{largest(r):g} {r}" for r in sorted({r for r, _ in wanted.values()}))
    for key, (res, amount) in wanted.items():
        best = largest(res)
        if amount > best:
            fix = f"set {key} ≤ {best:g}" if best > 0 else f"set {key}: 0"
            raise ResourceError(
                f"{key} = {amount:g}: no Ray node has {amount:g} {res} ({where}: "
                f"{len(nodes)} node(s), the largest with {best:g} {res}); one task or trial "
                f"runs on one node, so {fix} or use a larger machine"
            )
    keys = ", ".join(f"{k} = {a:g}" for k, (_, a) in wanted.items())
    raise ResourceError(
        f"{keys}: no single Ray node offers all of it at once ({where}; largest per "
        f"resource: {offered})"
    )


def check_device(device: str, cluster: bool) -> None:
    """``device: cuda`` needs a CUDA device that torch can use. On a cluster the trials may run
    on other nodes than the driver, so there only the GPU request (``train.gpu``) is checked."""
    if device != "cuda" or cluster:
        return
    import torch

    if not torch.cuda.is_available():
        raise ResourceError(
            "device = 'cuda': torch sees no CUDA device on this machine "
            f"(torch {torch.__version__}, torch.cuda.is_available() is False); "
            "use device: cpu, or auto (cuda when available)"
        )


@contextlib.contextmanager
def ray_session(
    address: str | None, num_cpus: int | None, needs: Needs | None = None
) -> Iterator[None]:
    """Join ``address`` (or ``$RAY_ADDRESS``), else start a local Ray for the duration; an
    already initialised Ray (a test's shared instance) is used as it is. ``needs`` (parameter
    key → (resource, amount)) is checked against the nodes before anything is scheduled."""
    import ray

    if ray.is_initialized():
        if needs:
            check_resources(needs, node_resources(), "the running Ray")
        yield
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # A checkpoint per epoch of short epochs is the design, not a bottleneck worth a warning.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    address = address or os.environ.get("RAY_ADDRESS") or None
    temp = None
    if address:
        log.info("joining the Ray cluster at %s", address)
        ray.init(address=address, log_to_driver=False)
        where = f"Ray cluster at {address}"
    else:
        cpus = num_cpus or os.cpu_count()
        # AF_UNIX socket paths are limited to ~107 bytes: keep Ray's session folder short.
        temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
        ray.init(num_cpus=cpus, _temp_dir=temp, include_dashboard=False, log_to_driver=False)
        where = f"local Ray with ray.num_cpus = {num_cpus}" if num_cpus else "this machine"
    try:
        if needs:
            check_resources(needs, node_resources(), where)
        yield
    finally:
        ray.shutdown()
        if temp is not None:
            _remove(temp)


def _remove(folder: str) -> None:
    # After Ctrl-C, Ray's processes (same process group) may still be writing their logs while
    # the folder is removed: retry briefly so no session folder is left in /tmp.
    for _ in range(10):
        shutil.rmtree(folder, ignore_errors=True)
        if not os.path.exists(folder):
            return
        time.sleep(0.2)
