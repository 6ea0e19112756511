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


def fake_row(
    case: str,
    target: str,
    weighting: str,
    seed: int,
    image_id: str,
    mpsnr: float,
    *,
    method: str = "dlw",
    corrupted: bool = True,
    noisy_mpsnr: float = 14.0,
    converged: bool = True,
    edge: bool = False,
) -> dict:
    """One FAKE row of results.parquet; the other metrics follow MPSNR monotonically."""
    kind = weighting.split(":")[0]
    no_auc = kind in ("unweighted", "none") or not corrupted
    auc = np.nan if no_auc else float(np.clip(0.5 + 0.04 * (mpsnr - 20.0), 0.0, 1.0))
    return {
        "task": "denoise",
        "method": method,
        "weighting": weighting,
        "weighting_kind": kind,
        "source_set": weighting.split(":", 1)[1] if kind == "dlw" else "",
        "seed": seed,
        "target": target,
        "case": case,
        "noise_model": case.removeprefix("fake-"),
        "case_params": json.dumps({"fake": True, "case": case}),
        "image_id": image_id,
        "split": "test",
        "synthetic": True,
        "noisy_mpsnr": noisy_mpsnr,
        "mpsnr": mpsnr,
        "mssim": 0.5 + mpsnr / 100.0,
        "sam": 0.3 - mpsnr / 200.0,
        "ergas": 200.0 - 3.0 * mpsnr,
        "weight_auc": auc,
        "oracle_corr": np.nan if np.isnan(auc) else auc - 0.2,
        "strength": np.nan if kind == "none" else 1.0,
        "strength_on_edge": edge,
        "reference_strengths": "{}",
        "oracle_informed": kind in ("oracle", "none"),
        "time_s": 0.01,
        "iterations": 0 if kind == "none" else 40,
        "primal_residual": 1e-5,
        "dual_residual": 1e-5,
        "converged": converged,
        "git_commit": "0123456789abcdef0123456789abcdef01234567",
        "params_hash": "fakeparamshash",
        "dataset_hash": "fakedatasethash",
        "mlflow_run_id": f"fake-run-{case}-{target}",
        "checkpoint": f"models/dlw/{weighting[4:]}/seed-{seed}.pt" if kind == "dlw" else "",
    }


def rows_from(entries, case: str = "fake-case", target: str = "tv") -> pd.DataFrame:
    """A FAKE table from (weighting, seed, image_id, mpsnr) tuples: for hand computations."""
    return pd.DataFrame([fake_row(case, target, w, s, i, v) for w, s, i, v in entries])


def fake_results(
    cases=("fake-noniid", "fake-mixture"),
    targets=("tv", "nn"),
    source_sets=("nn", "nn+tv"),
    images=("fake-a", "fake-b", "fake-c"),
    seeds=(0, 1),
    baselines=("bm4d", "tv_l1"),
    seed: int = 0,
) -> pd.DataFrame:
    """FAKE rows: MPSNR = 20 + case, target, image and weighting effects + noise."""
    rng = np.random.default_rng(seed)
    effect = {"unweighted": 0.0, "handcrafted": 0.8, "oracle": 2.0}
    for k, s in enumerate(source_sets):
        effect[f"dlw:{s}"] = 1.5 - 0.7 * k
    rows = []
    for ci, case in enumerate(cases):
        corrupted = ci % 2 == 1
        for ti, target in enumerate(targets):
            for weighting, eff in effect.items():
                dlw = weighting.startswith("dlw:")
                for ii, image in enumerate(images):
                    for sd in seeds if dlw else (-1,):
                        value = 20.0 + ci + 2.0 * ti + ii + eff + float(rng.normal(0, 0.3))
                        # One unconverged solve and one grid-edge strength, for the warnings.
                        odd = (ci, ti, weighting, ii) == (0, 0, "handcrafted", 0)
                        rows.append(
                            fake_row(case, target, weighting, sd, image, value,
                                     corrupted=corrupted, noisy_mpsnr=14.0 + ii,
                                     converged=not odd, edge=odd)
                        )  # fmt: skip
        for base in baselines:
            weighting = "none" if base.startswith("bm") else "unweighted"
            for ii, image in enumerate(images):
                value = 22.0 + ci + ii + float(rng.normal(0, 0.3))
                rows.append(
                    fake_row(case, base, weighting, -1, image, value, method=base,
                             corrupted=corrupted, noisy_mpsnr=14.0 + ii)
                )  # fmt: skip
    return pd.DataFrame(rows)


def fake_gallery(results: pd.DataFrame, size: int = 12, per_case: int = 1) -> pd.DataFrame:
    """FAKE gallery rows (smooth ramps plus noise) for the first image(s) of every case."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    clean = (0.2 + 0.6 * xx * (1 - 0.5 * yy)).astype(np.float32)
    rows = []

    def add(case, image, kind, weighting, target, arr):
        rows.append(
            {
                "case": case,
                "image_id": image,
                "kind": kind,
                "weighting": weighting,
                "target": target,
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
            var = r[r["method"] == "dlw"]
            for w in dict.fromkeys(var["weighting"]):
                add(case, image, "weight", w, "", rng.gamma(2.0, 0.5, clean.shape))
                for t in dict.fromkeys(var["target"]):
                    add(case, image, "restored", w, t, clean + rng.normal(0, 0.03, clean.shape))
    return pd.DataFrame(rows)


def hostile_results() -> pd.DataFrame:
    """FAKE rows whose labels are hostile strings: a case, an image id and a weighting."""
    df = fake_results(
        cases=("fake-noniid", HOSTILE[0]),
        source_sets=(HOSTILE[1], "nn"),
        images=(HOSTILE[2], "fake-b", "fake-c"),  # first: the gallery shows it
        seeds=(0,),
        baselines=("bm4d",),
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
