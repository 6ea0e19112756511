"""``params.yaml`` → typed, validated :class:`Params`, one section per stage plus the shared
``seed``, ``device``, ``tracking`` and ``ray`` sections.

Unknown keys, wrong types and impossible values stop with a :class:`ConfigError` naming the key
and the value, e.g. ``params.yaml: degrade.cases[1].sigma_255 = -5.0: values must lie in [0, 255]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pipeline.data.params import PrepareParams
from pipeline.degrade.params import DegradeParams
from pipeline.evaluate.params import EvaluateParams
from pipeline.schema import ConfigError, parse_dataclass, require, to_plain
from pipeline.train.params import TrainParams

__all__ = ["ConfigError", "Params", "load_params", "parse_params"]


@dataclass(frozen=True)
class TrackingParams:
    # MLflow tracking URI; null → $MLFLOW_TRACKING_URI, else a SQLite file at the repository root.
    uri: str | None = None
    experiment: str = "dlw-bench"


@dataclass(frozen=True)
class RayParams:
    # Ray cluster address; null → $RAY_ADDRESS, else a local Ray started by the stage.
    address: str | None = None
    # CPUs of a local Ray (null: all of this machine's).
    num_cpus: int | None = None

    def check(self, where: str) -> None:
        if self.num_cpus is not None:
            require(self.num_cpus >= 1, f"{where}.num_cpus", self.num_cpus, "must be ≥ 1")


@dataclass(frozen=True)
class Params:
    seed: int = 0
    # Where learned parts run: cpu, cuda, or auto (cuda when available).
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    tracking: TrackingParams = field(default_factory=TrackingParams)
    ray: RayParams = field(default_factory=RayParams)
    prepare: PrepareParams = field(default_factory=PrepareParams)
    degrade: DegradeParams = field(default_factory=DegradeParams)
    train: TrainParams = field(default_factory=TrainParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    # The report stage's options, validated by pipeline.report.build.ReportOptions (which needs
    # pandas, so it is not imported while parsing).
    report: dict[str, Any] = field(default_factory=dict)

    def check(self, where: str) -> None:
        require(self.seed >= 0, "seed", self.seed, "must be a non-negative integer")

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)


def parse_params(data: Any, source: str = "params.yaml") -> Params:
    try:
        return parse_dataclass(Params, data, "")
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the parameters file ({exc.strerror})") from None
    return parse_params(load_yaml(text, str(path)), str(path))


def load_yaml(text: str, source: str) -> Any:
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader, node, deep=False):
        keys = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in keys:
                line = key_node.start_mark.line + 1
                raise ConfigError(f"{source}:{line}: key {key!r} appears twice")
            keys.add(key)
        return yaml.SafeLoader.construct_mapping(loader, node, deep)

    UniqueKeyLoader.add_constructor(
        yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping
    )
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({exc})") from None
