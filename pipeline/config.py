"""``params.yaml`` → typed, validated :class:`Params`, one section per stage plus the shared
``seed``, ``device``, ``tracking`` and ``ray`` sections.

Unknown keys, wrong types and impossible values stop with a :class:`ConfigError` naming the key
and the value, e.g. ``params.yaml: degrade.cases[1].sigma_255 = -5.0: values must lie in [0, 255]``.
Every stage parses the whole file, so a typo anywhere (``sead: 3``) stops whichever stage runs;
:func:`check_file` (``python -m stages.check``) reports every section's first error at once,
including the checks that need the models (evaluate's target overrides) and the report options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pipeline.data.params import PrepareParams
from pipeline.degrade.params import DegradeParams
from pipeline.evaluate.params import EvaluateParams
from pipeline.methods.params import TrainParams, default_train
from pipeline.schema import ConfigError, parse_dataclass, require, to_plain

__all__ = ["ConfigError", "Params", "check_file", "load_params", "parse_params"]


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
    train: TrainParams = field(default_factory=default_train)
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
    return parse_params(load_yaml(read_text(path), str(path)), str(path))


def read_text(path: Path) -> str:
    """The file as UTF-8 text; an unreadable or non-UTF-8 file is a :class:`ConfigError` naming
    it (and the first bad byte's line)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise ConfigError(f"{path}: cannot read the parameters file ({why})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        byte = raw[exc.start : exc.start + 1].hex()
        raise ConfigError(
            f"{path}:{line}: not UTF-8 text (byte 0x{byte} at offset {exc.start}); save the "
            "file as UTF-8"
        ) from None


def check_file(path: str | Path = "params.yaml") -> list[str]:
    """Every problem of a parameters file, one line each (empty: valid). Each top-level section
    is parsed on its own, so one bad section does not hide another's error; then the checks
    that need more than the schema: the cross-section rules, the evaluate targets' overrides
    (they import the models) and the report options."""
    import typing

    from pipeline.schema import parse, unknown_keys

    path = Path(path)
    source = str(path)
    try:
        data = load_yaml(read_text(path), source)
    except ConfigError as exc:
        return [str(exc)]
    if data is None:
        data = {}
    if not isinstance(data, dict):
        try:
            parse_params(data, source)
        except ConfigError as exc:
            return [str(exc)]
    hints = typing.get_type_hints(Params)
    errors = []
    unknown = sorted((k for k in data if k not in hints), key=str)
    if unknown:
        errors.append(f"{source}: {unknown_keys('', unknown, sorted(hints))}")
    for name in hints:
        if name in data:
            try:
                parse(hints[name], data[name], name)
            except ConfigError as exc:
                errors.append(f"{source}: {exc}")
    if errors:
        return errors
    try:
        params = parse_params(data, source)
    except ConfigError as exc:
        return [str(exc)]
    from pipeline.evaluate.restorers import check_restorers
    from pipeline.report.build import ReportOptions

    for name in params.train.methods:
        try:
            params.train.method(name).check(f"train.{name}")
        except ValueError as exc:
            errors.append(f"{source}: {exc}")
    try:
        check_restorers(params.evaluate, source)
    except ValueError as exc:
        errors.append(str(exc))
    try:
        ReportOptions.from_section(params.report)
    except (ValueError, TypeError) as exc:
        text = str(exc).removeprefix("params.yaml: ")
        errors.append(f"{source}: {text}")
    return errors


def load_yaml(text: str, source: str) -> Any:
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader, node, deep=False):
        keys = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                hash(key)
            except TypeError:
                raise ConfigError(
                    f"{source}:{line}: a key must be a name (a word), not a {type(key).__name__}"
                ) from None
            if key in keys:
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
