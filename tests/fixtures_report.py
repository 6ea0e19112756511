"""FAKE results and gallery tables for the report tests: made-up numbers in the evaluate stage's
schema (pipeline/evaluate/results.py), never real results. Image ids start with ``fake-`` and
every row is marked synthetic. Write them only under a test's temporary folder, never into
``reports/``.

``python -m tests.fixtures_report DIR`` writes the fake Parquet files and the report built from
them into DIR (which must not be the repository's ``reports/``): for looking at the page.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HOSTILE = ("<script>alert(1)</script>", '"><img src=x onerror=1>', "</script>")
FAKE_META = {
    "params": {"seed": 0, "evaluate": {"cases": ["fake-noniid", "fake-mixture"], "note": "FAKE"}},
    "packages": {"numpy": np.__version__, "pandas": pd.__version__},
    "fake": True,
}


# Peers that are given the true noise level (BM3D/BM4D style): oracle-informed rows.
INFORMED_PEERS = ("bm4d", "bm3d")


def _split(label: str) -> tuple[str, str]:
    """(method, variant) of a learned label ``<method>:<variant>``; ("", "") for a built-in."""
    method, _, variant = label.partition(":")
    return (method, variant) if variant else ("", "")


def fake_row(
    case: str,
    restorer: str,
    weighting: str,
    seed: int,
    image_id: str,
    mpsnr: float,
    *,
    restorer_seed: int = -1,
    role: str = "target",
    restorer_method: str = "",
    corrupted: bool = True,
    noisy_mpsnr: float = 14.0,
    converged: bool = True,
    edge: bool = False,
) -> dict:
    """One FAKE row of results.parquet; the other metrics follow MPSNR monotonically.
    ``seed`` is the weighting's training seed, ``restorer_seed`` the restorer's (-1: none)."""
    w_method, w_variant = _split(weighting)
    r_variant = restorer.partition(":")[2] if restorer_method else ""
    no_map = weighting in ("unweighted", "none")
    no_auc = no_map or not corrupted
    auc = np.nan if no_auc else float(np.clip(0.5 + 0.04 * (mpsnr - 20.0), 0.0, 1.0))
    classical = not restorer_method
    return {
        "task": "denoise",
        "case": case,
        "noise_model": case.removeprefix("fake-"),
        "case_params": json.dumps({"fake": True, "case": case}),
        "image_id": image_id,
        "split": "test",
        "synthetic": True,
        "weighting": weighting,
        "weighting_method": w_method,
        "weighting_variant": w_variant,
        "weighting_seed": seed,
        "restorer": restorer,
        "restorer_method": restorer_method,
        "restorer_variant": r_variant,
        "restorer_seed": restorer_seed,
        "restorer_role": role,
        "noisy_mpsnr": noisy_mpsnr,
        "mpsnr": mpsnr,
        "mssim": 0.5 + mpsnr / 100.0,
        "sam": 0.3 - mpsnr / 200.0,
        "ergas": 200.0 - 3.0 * mpsnr,
        "weight_auc": auc,
        "oracle_corr": np.nan if np.isnan(auc) else auc - 0.2,
        "strength": 1.0 if classical and role == "target" else np.nan,
        "strength_on_edge": edge,
        "val_mpsnr": mpsnr - 0.1,
        "reference_strengths": "{}",
        "oracle_informed": weighting == "oracle" or restorer in INFORMED_PEERS,
        "time_s": 0.01,
        "iterations": 40 if classical and role == "target" else 0,
        "primal_residual": 1e-5,
        "dual_residual": 1e-5,
        "converged": converged,
        "git_commit": "0123456789abcdef0123456789abcdef01234567",
        "params_hash": "fakeparamshash",
        "dataset_hash": "fakedatasethash",
        "mlflow_run_id": f"fake-run-{case}-{restorer}",
        "weighting_checkpoint": (
            f"models/{w_method}/{w_variant}/seed-{seed}.pt" if w_method else ""
        ),
        "restorer_checkpoint": (
            f"models/{restorer_method}/{r_variant or restorer}/seed-{restorer_seed}.pt"
            if restorer_method
            else ""
        ),
    }


def rows_from(entries, case: str = "fake-case", restorer: str = "tv", **kw) -> pd.DataFrame:
    """A FAKE table from (weighting, seed, image_id, mpsnr) tuples, or (weighting, seed,
    restorer_seed, image_id, mpsnr): for hand computations."""
    rows = []
    for e in entries:
        w, s, rs, i, v = e if len(e) == 5 else (e[0], e[1], -1, e[2], e[3])
        rows.append(fake_row(case, restorer, w, s, i, v, restorer_seed=rs, **kw))
    return pd.DataFrame(rows)


def fake_results(
    cases=("fake-noniid", "fake-mixture"),
    restorers=("tv", "nn"),
    learned_weightings=("dlw:nn", "dlw:nn+tv", "toy:a"),
    learned_restorers=("toy",),
    plain_learned=("toy:b",),
    images=("fake-a", "fake-b", "fake-c"),
    seeds=(0, 1),
    restorer_seeds=(0, 1),
    peers=("bm4d", "tv_l1"),
    seed: int = 0,
) -> pd.DataFrame:
    """FAKE rows: MPSNR = 20 + case, restorer, image and weighting effects + noise.

    Every weighting (built-in and ``learned_weightings``, of two methods by default) goes with
    every classical restorer of ``restorers`` and every learned restorer of ``learned_restorers``
    (role ``target``, trained with ``restorer_seeds``); ``plain_learned`` are learned restorers
    that take no weighting (role ``learned``) and ``peers`` classical peer baselines (role
    ``peer``), both with weighting ``none``."""
    rng = np.random.default_rng(seed)
    effect = {"unweighted": 0.0, "handcrafted": 0.8, "oracle": 2.0}
    for k, w in enumerate(learned_weightings):
        effect[w] = 1.5 - 0.7 * k
    parts = [(r, "") for r in restorers] + [(r, _method(r)) for r in learned_restorers]
    rows = []
    for ci, case in enumerate(cases):
        corrupted = ci % 2 == 1
        for ti, (restorer, r_method) in enumerate(parts):
            for weighting, eff in effect.items():
                w_seeds = seeds if _split(weighting)[0] else (-1,)
                r_seeds = restorer_seeds if r_method else (-1,)
                for ii, image in enumerate(images):
                    for sd in w_seeds:
                        for rs in r_seeds:
                            value = 20.0 + ci + 2.0 * ti + ii + eff + float(rng.normal(0, 0.3))
                            # One unconverged solve and one grid-edge strength, for the warnings.
                            odd = (ci, ti, weighting, ii) == (0, 0, "handcrafted", 0)
                            rows.append(
                                fake_row(case, restorer, weighting, sd, image, value,
                                         restorer_seed=rs, restorer_method=r_method,
                                         corrupted=corrupted, noisy_mpsnr=14.0 + ii,
                                         converged=not odd, edge=odd)
                            )  # fmt: skip
        for restorer in plain_learned:
            for ii, image in enumerate(images):
                for rs in restorer_seeds:
                    value = 21.5 + ci + ii + float(rng.normal(0, 0.3))
                    rows.append(
                        fake_row(case, restorer, "none", -1, image, value, restorer_seed=rs,
                                 role="learned", restorer_method=_method(restorer),
                                 corrupted=corrupted, noisy_mpsnr=14.0 + ii)
                    )  # fmt: skip
        for peer in peers:
            for ii, image in enumerate(images):
                value = 22.0 + ci + ii + float(rng.normal(0, 0.3))
                rows.append(
                    fake_row(case, peer, "none", -1, image, value, role="peer",
                             corrupted=corrupted, noisy_mpsnr=14.0 + ii)
                )  # fmt: skip
    return pd.DataFrame(rows)


def _method(restorer: str) -> str:
    """The method of a learned restorer label ``<method>`` or ``<method>:<variant>``."""
    return restorer.partition(":")[0]


def fake_gallery(results: pd.DataFrame, size: int = 12, per_case: int = 1) -> pd.DataFrame:
    """FAKE gallery rows (smooth ramps plus noise) for the first image(s) of every case."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    clean = (0.2 + 0.6 * xx * (1 - 0.5 * yy)).astype(np.float32)
    rows = []

    def add(case, image, kind, weighting, restorer, arr):
        rows.append(
            {
                "case": case,
                "image_id": image,
                "kind": kind,
                "weighting": weighting,
                "restorer": restorer,
                "band": 3,
                "height": size,
                "width": size,
                "values": np.asarray(arr, dtype=np.float32).ravel().tolist(),
            }
        )

    for case in dict.fromkeys(results["case"]):
        r = results[results["case"] == case]
        for image in list(dict.fromkeys(r["image_id"]))[:per_case]:
            add(case, image, "clean", "", "", clean)
            add(case, image, "noisy", "", "", clean + rng.normal(0, 0.2, clean.shape))
            var = r[r["weighting"] != "none"]
            for w in dict.fromkeys(var["weighting"]):
                add(case, image, "weight", w, "", rng.gamma(2.0, 0.5, clean.shape))
                for t in dict.fromkeys(var["restorer"]):
                    add(case, image, "restored", w, t, clean + rng.normal(0, 0.03, clean.shape))
    return pd.DataFrame(rows)


def hostile_results() -> pd.DataFrame:
    """FAKE rows whose labels are hostile strings: a case, an image id, a weighting and a
    learned restorer."""
    df = fake_results(
        cases=("fake-noniid", HOSTILE[0]),
        learned_weightings=("dlw:" + HOSTILE[1], "dlw:nn"),
        plain_learned=("toy:" + HOSTILE[1],),
        images=(HOSTILE[2], "fake-b", "fake-c"),  # first: the gallery shows it
        seeds=(0,),
        restorer_seeds=(0,),
        peers=("bm4d",),
    )
    df["case_params"] = json.dumps({"x": HOSTILE[0] + HOSTILE[1]})
    df["git_commit"] = HOSTILE[1]
    return df


def hostile_meta() -> dict:
    return {**FAKE_META, "params": {"evaluate": {"note": HOSTILE[0], "x": HOSTILE[1]}}}


def write_fake(folder: Path, results: pd.DataFrame, gallery: pd.DataFrame, meta=None) -> Path:
    """The FAKE tables as results.parquet / gallery.parquet in ``folder`` (never reports/)."""
    from pipeline.io import write_parquet

    folder = Path(folder)
    if folder.resolve() == (Path(__file__).resolve().parents[1] / "reports").resolve():
        raise ValueError("fake report data must never be written into reports/")
    write_parquet(folder / "results.parquet", results, meta or FAKE_META)
    write_parquet(folder / "gallery.parquet", gallery, {"fake": True})
    return folder


def main(folder: str) -> None:
    from pipeline.report.build import build_report, read_gallery, read_results, write_report

    out = Path(folder)
    results = fake_results()
    write_fake(out, results, fake_gallery(results))
    df, meta = read_results(out / "results.parquet")
    write_report(build_report(df, read_gallery(out / "gallery.parquet"), meta), out)
    print(out / "index.html")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/fake_report")
