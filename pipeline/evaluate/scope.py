"""Where the full cross of the matrix is narrowed (``evaluate.scope`` in params.yaml).

The matrix crosses every restorer with every case and, for a target restorer, every weighting.
Some combinations say nothing new and cost much: an i.i.d. noise level added to study one
method's generalisation need not be solved by every model under every map (on i.i.d. noise the
oracle map is constant), and a slow learned restorer need not take every trained DLW map. The
scope names the exceptions, and nothing else changes:

``cases``
    case → ``{restorers: [...], weightings: [...]}``: only these restorers (and, for targets,
    only these weightings) are solved on that case; either list may be left out (all).
``restorers``
    restorer → ``{weightings: [...], cases: [...]}``: the weightings a target restorer is solved
    with, and the only cases it is solved on; a plain list is the weightings alone.

A name matches a label exactly or a learned method's every part: ``alr`` matches
``alr:varying``, ``dlw`` every ``dlw:<set>``; a restorer rule for the exact label wins over its
method's (``alr:varying`` everywhere, the other ``alr`` parts on a few cases). Cells left out
are absent from the results, never filled in (docs/conventions.md, "Fair comparison").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.schema import ConfigError

__all__ = ["Scope", "matches"]

CASE_KEYS = ("restorers", "weightings")


def matches(name: str, label: str) -> bool:
    """Whether the scope's ``name`` covers the matrix label ``label`` (exact, or its method)."""
    return label == name or label.partition(":")[0] == name


def _names(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} = {value!r}: a non-empty list of names")
    return tuple(value)


@dataclass(frozen=True)
class Scope:
    cases: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)
    restorers: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)

    @classmethod
    def parse(cls, plain: dict[str, Any] | None, where: str = "evaluate.scope") -> Scope:
        plain = plain or {}
        if not isinstance(plain, dict):
            raise ConfigError(f"{where} = {plain!r}: a mapping with cases and/or restorers")
        unknown = sorted(set(plain) - {"cases", "restorers"})
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}: unknown key (known: cases, restorers)")
        cases = {}
        for case, rule in (plain.get("cases") or {}).items():
            at = f"{where}.cases.{case}"
            if not isinstance(rule, dict) or not rule:
                raise ConfigError(f"{at} = {rule!r}: a mapping with restorers and/or weightings")
            bad = sorted(set(rule) - set(CASE_KEYS))
            if bad:
                raise ConfigError(f"{at}.{bad[0]}: unknown key (known: {', '.join(CASE_KEYS)})")
            cases[str(case)] = {k: _names(v, f"{at}.{k}") for k, v in rule.items()}
        restorers = {}
        for name, rule in (plain.get("restorers") or {}).items():
            at = f"{where}.restorers.{name}"
            if isinstance(rule, list):
                rule = {"weightings": rule}
            if not isinstance(rule, dict) or not rule:
                raise ConfigError(f"{at} = {rule!r}: a list of weightings, or a mapping with "
                                  "weightings and/or cases")  # fmt: skip
            bad = sorted(set(rule) - {"weightings", "cases"})
            if bad:
                raise ConfigError(f"{at}.{bad[0]}: unknown key (known: weightings, cases)")
            restorers[str(name)] = {k: _names(v, f"{at}.{k}") for k, v in rule.items()}
        return cls(cases, restorers)

    def check(self, cases: list[str] | None, restorers: list[str], weightings: list[str],
              where: str = "evaluate.scope") -> None:  # fmt: skip
        """Every name refers to something evaluate lists (a typo would silently drop cells)."""

        def known(name: str, pool: list[str], at: str, what: str) -> None:
            if not any(matches(name, p) or matches(p, name) for p in pool):
                raise ConfigError(f"{at}: {what} {name!r} is not in evaluate.{what}s")

        for case, rule in self.cases.items():
            if cases is not None and case not in cases:
                raise ConfigError(f"{where}.cases.{case}: not in evaluate.cases")
            for name in rule.get("restorers", ()):
                known(name, restorers, f"{where}.cases.{case}.restorers", "restorer")
            for name in rule.get("weightings", ()):
                known(name, weightings, f"{where}.cases.{case}.weightings", "weighting")
        for r, rule in self.restorers.items():
            known(r, restorers, f"{where}.restorers.{r}", "restorer")
            for name in rule.get("weightings", ()):
                known(name, weightings, f"{where}.restorers.{r}.weightings", "weighting")
            for case in rule.get("cases", ()):
                if cases is not None and case not in cases:
                    raise ConfigError(
                        f"{where}.restorers.{r}.cases: {case!r} not in evaluate.cases"
                    )

    def check_labels(self, restorers: list[str], weightings: list[str]) -> None:
        """Once the parts are planned: every name matches a planned label (a variant named in
        the scope that was never trained would silently drop its cells)."""

        def need(name: str, labels: list[str], what: str, at: str) -> None:
            if not any(matches(name, label) for label in labels):
                known = ", ".join(sorted(set(labels)))
                raise ConfigError(f"{at}: {what} {name!r} matches none of {known}")

        for case, rule in self.cases.items():
            for name in rule.get("restorers", ()):
                need(name, restorers, "restorer", f"evaluate.scope.cases.{case}.restorers")
            for name in rule.get("weightings", ()):
                need(name, weightings, "weighting", f"evaluate.scope.cases.{case}.weightings")
        for r, rule in self.restorers.items():
            need(r, restorers, "restorer", f"evaluate.scope.restorers.{r}")
            for name in rule.get("weightings", ()):
                need(name, weightings, "weighting", f"evaluate.scope.restorers.{r}.weightings")

    def solves(self, restorer: str, case: str) -> bool:
        """Whether ``restorer`` (a label) is solved on ``case`` at all."""
        rule = self.cases.get(case, {})
        if "restorers" in rule and not any(matches(n, restorer) for n in rule["restorers"]):
            return False
        own = self._of(restorer).get("cases")
        return own is None or case in own

    def takes(self, restorer: str, case: str, weighting: str) -> bool:
        """Whether the target ``restorer`` is solved on ``case`` with ``weighting``."""
        for names in (self.cases.get(case, {}).get("weightings"),
                      self._of(restorer).get("weightings")):  # fmt: skip
            if names is not None and not any(matches(n, weighting) for n in names):
                return False
        return True

    def _of(self, restorer: str) -> dict[str, tuple[str, ...]]:
        """The restorer's own rule: its exact label's, else its method's, else none."""
        if restorer in self.restorers:
            return self.restorers[restorer]
        for name, rule in self.restorers.items():
            if matches(name, restorer):
                return rule
        return {}
