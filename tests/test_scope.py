"""evaluate.scope: the exceptions to the full cross of the matrix (pipeline.evaluate.scope)."""

from __future__ import annotations

import pytest

from pipeline.evaluate.params import EvaluateParams
from pipeline.evaluate.restorers import Restorer
from pipeline.evaluate.scope import Scope, matches
from pipeline.evaluate.transfer import plan_test, tuning_keys
from pipeline.evaluate.weightings import Weighting
from pipeline.schema import ConfigError, parse_dataclass

ALL = ("identity", "blur")


def _meta():
    rows = []
    for split in ("val", "test"):
        for case, op in (("impulse", "identity"), ("iid-51", "identity"), ("blur/x", "blur")):
            rows.append({"split": split, "case": case, "operator": op, "key": f"{split}/{case}"})
    return rows


def _restorers():
    return [
        Restorer("tv", "model", role="target", tuned=True, operators=ALL),
        Restorer("bm4d", "baseline", role="peer", tuned=False),
        Restorer("alr:varying", "learned", role="target", tuned=True, seed=0, operators=ALL),
        Restorer("alr:s0.1", "learned", role="target", tuned=True, seed=0, operators=ALL),
    ]


def _weightings():
    return [Weighting("unweighted"), Weighting("oracle"), Weighting("dlw:nn", seed=0),
            Weighting("dlw:tv", seed=0)]  # fmt: skip


SCOPE = {
    "cases": {"iid-51": {"restorers": ["alr", "bm4d"], "weightings": ["unweighted"]}},
    "restorers": {"alr": ["unweighted", "dlw:tv"]},
}


def test_matches_label_or_method():
    assert matches("alr", "alr:varying") and matches("alr:varying", "alr:varying")
    assert not matches("alr:s0.1", "alr:varying") and not matches("al", "alr:varying")
    assert not matches("dlw", "dlwx:a")


def test_full_cross_without_scope():
    keys = tuning_keys(_meta(), _restorers(), _weightings())
    # tv and both alr parts: 3 cases × 4 weightings each; bm4d is untuned.
    assert len(keys) == 3 * 3 * 4


def test_scope_narrows_cases_and_weightings_exactly():
    scope = Scope.parse(SCOPE)
    keys = set(tuning_keys(_meta(), _restorers(), _weightings(), scope))
    tv = {k for k in keys if k[0] == "tv"}
    assert {k[2] for k in tv} == {"impulse", "blur/x"}  # tv is off iid-51
    assert len(tv) == 2 * 4
    alr = {k for k in keys if k[0].startswith("alr")}
    # alr: two weightings on impulse and blur, only unweighted on iid-51 (both rules apply).
    for part in ("alr:varying", "alr:s0.1"):
        mine = {(k[2], k[3]) for k in alr if k[0] == part}
        assert mine == {
            ("impulse", "unweighted"), ("impulse", "dlw:tv"), ("blur/x", "unweighted"),
            ("blur/x", "dlw:tv"), ("iid-51", "unweighted"),
        }  # fmt: skip
    chosen = {k: {"multiplier": 1.0} for k in keys}
    jobs = [
        j for g in plan_test(_meta(), _restorers(), _weightings(), chosen, {}, scope) for j in g
    ]
    on_iid = {(j.restorer, j.weighting) for j in jobs if j.item == "test/iid-51"}
    assert on_iid == {("bm4d", "none"), ("alr:varying", "unweighted"), ("alr:s0.1", "unweighted")}
    # bm4d (a peer) still runs on every denoising case, with weighting none.
    assert {j.item for j in jobs if j.restorer == "bm4d"} == {"test/impulse", "test/iid-51"}


@pytest.mark.parametrize(
    ("scope", "message"),
    [
        ({"case": {}}, "evaluate.scope.case: unknown key"),
        ({"cases": {"iid-51": {"restorer": ["tv"]}}}, "evaluate.scope.cases.iid-51.restorer"),
        ({"cases": {"iid-51": {"restorers": []}}}, "evaluate.scope.cases.iid-51.restorers"),
        ({"cases": {"nope": {"restorers": ["tv"]}}}, "evaluate.scope.cases.nope: not in"),
        ({"cases": {"iid-51": {"restorers": ["tvx"]}}}, "restorer 'tvx' is not in"),
        ({"restorers": {"tv": ["oracel"]}}, "weighting 'oracel' is not in"),
        ({"restorers": {"tv": "oracle"}}, "evaluate.scope.restorers.tv = 'oracle'"),
        ({"restorers": {"tv": {"case": ["impulse"]}}}, "evaluate.scope.restorers.tv.case"),
        ({"restorers": {"tv": {"cases": ["nope"]}}}, "'nope' not in evaluate.cases"),
    ],
)
def test_bad_scope_names_the_key(scope, message):
    plain = {
        "weightings": ["unweighted", "oracle"],
        "restorers": {"tv": {}, "bm4d": {}},
        "cases": ["impulse", "iid-51"],
        "scope": scope,
    }
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        parse_dataclass(EvaluateParams, plain, "evaluate").check("evaluate")


def test_restorer_cases_and_the_exact_label_wins():
    """alr:varying on every case, the other alr parts only on the i.i.d. case."""
    scope = Scope.parse({
        "restorers": {"alr": {"cases": ["iid-51"]}, "alr:varying": {"weightings": ["oracle"]}},
    })  # fmt: skip
    keys = set(tuning_keys(_meta(), _restorers(), _weightings(), scope))
    assert {(k[2], k[3]) for k in keys if k[0] == "alr:s0.1"} == {
        ("iid-51", w.label) for w in _weightings()
    }
    assert {(k[2], k[3]) for k in keys if k[0] == "alr:varying"} == {
        (c, "oracle") for c in ("impulse", "iid-51", "blur/x")
    }
    assert len({k for k in keys if k[0] == "tv"}) == 3 * 4  # untouched


def test_scope_names_must_match_planned_parts():
    """A variant named in the scope but never trained is an error once the parts are planned."""
    scope = Scope.parse({"restorers": {"alr:varying": ["unweighted", "dlw:tvx"]}})
    labels = [r.label for r in _restorers()]
    weightings = [w.label for w in _weightings()]
    with pytest.raises(ConfigError, match=r"weighting 'dlw:tvx' matches none of"):
        scope.check_labels(labels, weightings)
    with pytest.raises(ConfigError, match=r"evaluate.scope.restorers.alr:s0.3: restorer"):
        Scope.parse({"restorers": {"alr:s0.3": ["unweighted"]}}).check_labels(labels, weightings)
    Scope.parse(SCOPE).check_labels(labels, weightings)  # the names above all match
