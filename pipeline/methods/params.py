"""The ``train`` section of params.yaml (:class:`TrainParams`) and the part of every learned
method's section that the Ray Tune runner reads (:class:`TrialParams`: seeds, epochs, the
searched grid, the scheduler and the resources of a trial; ``docs/architecture.md``).

``train.methods`` lists the methods the pipeline trains (one DVC stage ``train@<method>`` each;
``dvc.yaml`` iterates over this list). A method's own params dataclass derives from
:class:`TrialParams` and adds its fields; its section is ``train.<method>``. Every registered
method's section is parsed and validated, listed or not (an unknown key or a bad value names the
key), so a typo is caught before any stage runs.

No torch here: parsing params stays light.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pipeline.schema import (
    ConfigError,
    fail,
    parse,
    parse_dataclass,
    require,
    to_plain,
    unknown_keys,
)

__all__ = [
    "PRECISIONS",
    "SchedulerParams",
    "TrainParams",
    "TrialParams",
    "default_train",
    "spec_from_config",
]


# The arithmetic of a method's nets (pipeline/methods/precision.py): float32, bfloat16 autocast
# around the nets (solvers and losses stay float32), or bf16 where the hardware has it natively.
PRECISIONS = ("fp32", "bf16", "auto")


@dataclass(frozen=True)
class SchedulerParams:
    # fifo: every trial runs all its epochs; asha: Async Successive Halving on the method's metric.
    name: Literal["fifo", "asha"] = "fifo"
    grace_period: int = 1  # epochs before ASHA may stop a trial
    reduction_factor: int = 2

    def check(self, where: str) -> None:
        require(self.grace_period >= 1, f"{where}.grace_period", self.grace_period, "must be ≥ 1")
        ok = self.reduction_factor >= 2
        require(ok, f"{where}.reduction_factor", self.reduction_factor, "must be ≥ 2")


@dataclass(frozen=True)
class TrialParams:
    """Trials are ``variants × seeds × search`` (the method names its variants)."""

    # Hyper-parameters a trial may take from ``search`` (each a field of the dataclass).
    SEARCHABLE: ClassVar[tuple[str, ...]] = ("epochs",)

    seeds: list[int] = field(default_factory=lambda: [0])  # training seeds → seed-<k>.pt
    epochs: int = 6
    # Hyper-parameter grid, e.g. {lr: [0.001, 0.003]}: every value is a separate trial.
    search: dict[str, list[Any]] = field(default_factory=dict)
    scheduler: SchedulerParams = field(default_factory=SchedulerParams)
    cpu: float = 1.0  # Ray resources per trial; torch threads are pinned to the CPUs
    gpu: float = 0.0  # fractional GPUs share a device between trials
    max_failures: int = 2  # retries of a crashed trial, from its last checkpoint
    keep_checkpoints: int = 2  # checkpoints kept per trial in Ray's folder
    # fp32 | bf16 | auto: the nets' convolutions under bfloat16 autocast (bf16), solvers, losses
    # and parameters in float32; auto: bf16 where the hardware multiplies it natively.
    precision: str = "fp32"

    def check(self, where: str) -> None:
        def key(name: str) -> str:
            return f"{where}.{name}"

        require(len(self.seeds) > 0, key("seeds"), self.seeds, "needs at least one seed")
        require(all(k >= 0 for k in self.seeds), key("seeds"), self.seeds, "must be ≥ 0")
        require(len(set(self.seeds)) == len(self.seeds), key("seeds"), self.seeds, "listed twice")
        for name in self.SEARCHABLE:  # the configured values obey the rules of searched ones
            self.check_value(name, getattr(self, name), key(name))
        require(self.cpu > 0, key("cpu"), self.cpu, "must be positive")
        require(self.gpu >= 0, key("gpu"), self.gpu, "must be ≥ 0")
        require(self.max_failures >= 0, key("max_failures"), self.max_failures, "must be ≥ 0")
        ok = self.keep_checkpoints >= 1
        require(ok, key("keep_checkpoints"), self.keep_checkpoints, "must be ≥ 1")
        ok = self.precision in PRECISIONS
        require(ok, key("precision"), self.precision, f"one of {list(PRECISIONS)}")
        for name, values in self.search.items():
            where_s = f"{key('search')}.{name}"
            require(
                name in self.SEARCHABLE,
                where_s,
                values,
                f"not a searchable hyper-parameter (searchable: {', '.join(self.SEARCHABLE)})",
            )
            require(
                isinstance(values, list) and len(values) > 0,
                where_s,
                values,
                "must be a non-empty list of values",
            )
            for i, v in enumerate(values):
                value = parse(self._type_of(name), v, f"{where_s}[{i}]")
                self.check_value(name, value, f"{where_s}[{i}]")
        self.check_method(where)

    def check_method(self, where: str) -> None:
        """The method's own cross-field rules (override)."""

    def check_value(self, name: str, value: Any, where: str) -> None:
        """Rules for one value of a searchable hyper-parameter, used for the field itself and
        for every searched value (override; the default: counts are ≥ 1)."""
        if value < 1:
            raise ConfigError(f"{where} = {value!r}: must be ≥ 1")

    @classmethod
    def _type_of(cls, name: str) -> type:
        return typing.get_type_hints(cls)[name]

    def search_grid(self) -> dict[str, list[Any]]:
        """The searched values with their parameter types (ints stay ints)."""
        return {
            name: [parse(self._type_of(name), v, name) for v in values]
            for name, values in self.search.items()
        }

    def constants(self) -> dict[str, Any]:
        """The searchable hyper-parameters at their configured values (the trials' defaults)."""
        return {name: getattr(self, name) for name in self.SEARCHABLE}


@dataclass(frozen=True)
class TrainParams:
    methods: list[str] = field(default_factory=list)
    sections: dict[str, TrialParams] = field(default_factory=dict)

    @classmethod
    def from_param(cls, value: Any, where: str = "train") -> TrainParams:
        from pipeline.methods.registry import METHODS

        value = {} if value is None else value
        allowed = ["methods", *METHODS]
        if not isinstance(value, dict):
            kind = "list" if isinstance(value, list | tuple) else type(value).__name__
            keys = ", ".join(allowed)
            raise fail(where, value, f"must be a mapping of keys ({keys}), not a {kind}")
        unknown = sorted((k for k in value if k not in allowed), key=str)
        if unknown:
            raise ConfigError(unknown_keys(where, unknown, allowed))
        methods = parse(list[str], value.get("methods", list(METHODS)), f"{where}.methods")
        for i, name in enumerate(methods):
            known = ", ".join(METHODS)
            require(name in METHODS, f"{where}.methods[{i}]", name, f"unknown method ({known})")
        require(len(set(methods)) == len(methods), f"{where}.methods", methods, "listed twice")
        sections = {
            name: parse_dataclass(m.params_cls, value.get(name), f"{where}.{name}")
            for name, m in METHODS.items()
        }
        return cls(methods, sections)

    def method(self, name: str):
        """The method ``name`` with its parsed section (a :class:`Method` instance)."""
        from pipeline.methods.registry import get_method

        return get_method(name)(self.sections[name])

    def to_param(self) -> dict[str, Any]:
        return {"methods": list(self.methods), **{n: to_plain(s) for n, s in self.sections.items()}}


def default_train() -> TrainParams:
    return TrainParams.from_param({}, "train")


def spec_from_config(cls: type, config: dict[str, Any]) -> Any:
    """The trial spec dataclass ``cls`` from a trial's Tune config: the keys that are its fields,
    lists turned into tuples where the field is a tuple (Tune and YAML give lists; a frozen spec
    holds tuples so that it hashes and compares)."""
    from dataclasses import fields

    values = {}
    for f in fields(cls):
        if f.name in config:
            v = config[f.name]
            is_tuple = str(f.type).startswith("tuple") or f.type is tuple
            values[f.name] = tuple(v) if is_tuple and isinstance(v, list) else v
    return cls(**values)
