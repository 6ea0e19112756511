"""What BM4D's faster profiles cost against the pinned ``"np"``: CPU time and MPSNR, default data.

    .venv/bin/python benchmarks/bm4d_profile.py [--profiles np lc 8x8] [--images 5]
        [--cases stripe deadline impulse mixture noniid]

On the test cubes of the denoising cases of ``data/degraded`` (run ``dvc repro degrade`` first),
each paired with its clean cube through the manifest's ``clean_path`` as the evaluate stage pairs
them, BM4D runs with every profile of ``--profiles``, given the true mean σ of the degraded file
(``float(np.mean(sigma))``, what :meth:`pipeline.evaluate.restorers.Restorer.restore` passes),
one thread (``num_threads = 1`` and one BLAS/OpenMP thread), the cube as (H, W, C) as
:func:`pipeline.evaluate.baselines.denoise_baseline` does. The profiles are the ``bm4d``
package's (4.2.5) own classes:

* ``np``: ``BM4DProfile``, the pinned profile (4×4×4 hard-thresholding and 5×5×5 Wiener blocks,
  a ±7 voxel search window, stacks of 16 and 32 blocks);
* ``lc``: ``bm4d.profiles.BM4DProfileLC``, the package's "low complexity" profile: ``np`` with a
  ±4 search window in both passes and Wiener stacks of 16 (its docstring names it ``'lc'``;
  ``bm4d.bm4d`` does not accept that string, only the object);
* ``8x8``: ``BM4DProfile2D``, 8×8×1 blocks (the package's ``'8x8'`` string, and what ``np``
  uses below 5 bands).

The profiles run interleaved per cube (their order rotated from cube to cube, so that a slow
drift of this shared machine hits them alike), after one untimed warm-up each on a 16×16 crop.
The ``np`` output of the first cube must equal ``denoise_baseline``'s bit for bit (else exit:
the script would not measure what evaluate runs). Per case and profile: CPU seconds
(``time.process_time``, all threads of the process) and wall seconds summed over the images,
mean MPSNR (:func:`pipeline.evaluate.metrics.mpsnr`), the mean paired MPSNR difference to ``np``
with its two-sided 95 % t-interval over images (the test image is the unit, as in the report),
the worst image's difference and the speed ratio (``np``'s CPU seconds / the profile's). The row
``all`` pairs each image's mean over the cases (its interval is over images, n = images).
Writes ``benchmarks/results/bm4d_profile.json``; the verdict line applies the acceptance rule
(mean over the cases ≥ -0.1 dB and no case below -0.2 dB).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

# One BLAS/OpenMP thread: the variance computations of the package use NumPy/SciPy, and the
# evaluate stage runs each task on one CPU. Set before NumPy is imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CASES = ("stripe", "deadline", "impulse", "mixture", "noniid")
PROFILES = ("np", "lc", "8x8")
REFERENCE = "np"
MEAN_LOSS = 0.1  # dB: the most a faster profile may lose on average over the cases
CASE_LOSS = 0.2  # dB: ... and in any one case
CONFIDENCE = 0.95


def build_profile(name: str):
    """The package's profile object ``name``, single-threaded."""
    import bm4d
    from bm4d.profiles import BM4DProfileLC

    classes = {"np": bm4d.BM4DProfile, "lc": BM4DProfileLC, "8x8": bm4d.BM4DProfile2D}
    profile = classes[name]()
    profile.num_threads = 1
    return profile


def run_bm4d(noisy, sigma: float, profile: str):
    """BM4D of a (C, H, W) cube with ``profile``, as ``denoise_baseline`` calls it; returns the
    float32 (C, H, W) estimate, CPU and wall seconds."""
    import bm4d
    import numpy as np

    cube = np.array(noisy, dtype=np.float64)
    obj = build_profile(profile)
    cpu, wall = time.process_time(), time.perf_counter()
    out = bm4d.bm4d(cube.transpose(1, 2, 0), sigma, profile=obj)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    out = np.ascontiguousarray(np.asarray(out).transpose(2, 0, 1), dtype=np.float32)
    return out, cpu, wall


def interval(d) -> tuple[float, float, float]:
    """Mean of the paired differences ``d`` and its two-sided t-interval (NaN for n < 2)."""
    import numpy as np
    from scipy import stats

    d = np.asarray(d, dtype=np.float64)
    mean = float(d.mean())
    if d.size < 2:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size)
    return mean, mean - float(half), mean + float(half)


def summarise(df, profiles: list[str]):
    """Per case × profile and ``all``: times, MPSNR, paired difference to ``np``, speed ratio."""
    import pandas as pd

    wide = df.pivot_table(index=["case", "image_id"], columns="profile", values="mpsnr")
    rows = []
    groups = [(c, df[df.case == c], wide.loc[c]) for c in df.case.unique()]
    groups.append(("all", df, wide.groupby(level="image_id").mean()))
    for case, part, w in groups:
        ref_cpu = part[part.profile == REFERENCE].cpu_s.sum()
        ref_wall = part[part.profile == REFERENCE].wall_s.sum()
        for p in profiles:
            mine = part[part.profile == p]
            mean, lo, hi = interval(w[p] - w[REFERENCE])
            rows.append(
                {
                    "case": case,
                    "profile": p,
                    "images": int(w.shape[0]),
                    "cpu_s": float(mine.cpu_s.sum()),
                    "wall_s": float(mine.wall_s.sum()),
                    "mpsnr": float(w[p].mean()),
                    "d_mpsnr": mean,
                    "ci_lo": lo,
                    "ci_hi": hi,
                    "d_worst": float((w[p] - w[REFERENCE]).min()),
                    "speed_cpu": float(ref_cpu / mine.cpu_s.sum()),
                    "speed_wall": float(ref_wall / mine.wall_s.sum()),
                }
            )
    return pd.DataFrame(rows)


def verdict(summary, profile: str) -> dict:
    """The acceptance rule for ``profile``: mean over the cases of the mean paired difference
    ≥ -MEAN_LOSS and every case's ≥ -CASE_LOSS."""
    per_case = summary[(summary.profile == profile) & (summary.case != "all")]
    mean = float(per_case.d_mpsnr.mean())
    worst = per_case.loc[per_case.d_mpsnr.idxmin()]
    ok = mean >= -MEAN_LOSS and float(worst.d_mpsnr) >= -CASE_LOSS
    return {
        "profile": profile,
        "mean_over_cases_db": mean,
        "worst_case": str(worst.case),
        "worst_case_db": float(worst.d_mpsnr),
        "passes": bool(ok),
    }


def main() -> None:
    import numpy as np
    import pandas as pd

    from pipeline.degrade.tasks import load_degraded
    from pipeline.evaluate.baselines import denoise_baseline
    from pipeline.evaluate.metrics import mpsnr
    from pipeline.io import load_npy, write_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", nargs="+", default=list(PROFILES), choices=PROFILES)
    parser.add_argument("--cases", nargs="+", default=list(CASES))
    parser.add_argument("--images", type=int, default=0, help="test images per case (0: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/bm4d_profile.json")
    args = parser.parse_args()
    profiles = [REFERENCE, *[p for p in args.profiles if p != REFERENCE]]
    manifest = pd.read_parquet(ROOT / "data/degraded/manifest.parquet")
    test = manifest[(manifest.split == "test") & manifest.case.isin(args.cases)]
    test = test[test.get("task", pd.Series("denoise", index=test.index)) == "denoise"]
    test = test.sort_values(["case", "image_id"])
    if args.images:
        test = test.groupby("case", sort=False).head(args.images)
    missing = sorted(set(args.cases) - set(test.case))
    if missing:
        sys.exit(f"no denoising test images of {missing} in data/degraded; run dvc repro degrade")
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "threads": 1,
        "python": platform.python_version(),
        "loadavg_at_start": os.getloadavg(),
    }
    start = time.perf_counter()
    clean_cache: dict[str, np.ndarray] = {}
    records = []
    for k, row in enumerate(test.itertuples()):
        arrays, _ = load_degraded(ROOT / row.path)
        if row.clean_path not in clean_cache:
            clean_cache[row.clean_path] = load_npy(ROOT / row.clean_path)
        clean = clean_cache[row.clean_path]
        noisy, sigma = arrays["noisy"], float(np.mean(arrays["sigma"]))
        if k == 0:
            for p in profiles:  # imports, the package's .mat tables, the C library: untimed
                run_bm4d(noisy[:, :16, :16], sigma, p)
        order = profiles[k % len(profiles) :] + profiles[: k % len(profiles)]
        for p in order:
            x, cpu, wall = run_bm4d(noisy, sigma, p)
            if k == 0 and p == REFERENCE:
                same = denoise_baseline("bm4d", noisy, sigma)
                if not np.array_equal(same, x):
                    sys.exit("the np run differs from denoise_baseline: not what evaluate runs")
            records.append(
                {
                    "case": row.case,
                    "image_id": row.image_id,
                    "profile": p,
                    "sigma_mean_255": sigma * 255,
                    "cpu_s": cpu,
                    "wall_s": wall,
                    "noisy_mpsnr": mpsnr(clean, noisy),
                    "mpsnr": mpsnr(clean, x),
                }
            )
        done = [r for r in records if r["image_id"] == row.image_id and r["case"] == row.case]
        print(
            f"{row.case:9s} {row.image_id:22s} "
            + "  ".join(f"{r['profile']} {r['cpu_s']:5.2f} s {r['mpsnr']:6.2f} dB" for r in done),
            flush=True,
        )
    df = pd.DataFrame(records)
    summary = summarise(df, profiles)
    verdicts = [verdict(summary, p) for p in profiles if p != REFERENCE]
    machine["loadavg_at_end"] = os.getloadavg()
    machine["total_wall_s"] = time.perf_counter() - start
    print(
        f"\nBM4D profiles against {REFERENCE!r} (test cubes, true mean σ, 1 thread; d_mpsnr: "
        f"mean paired difference, {CONFIDENCE:.0%} t-interval over images; speed: "
        f"{REFERENCE}'s seconds / the profile's)"
    )
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for v in verdicts:
        print(
            f"{v['profile']}: mean over the cases {v['mean_over_cases_db']:+.3f} dB, worst case "
            f"{v['worst_case']} {v['worst_case_db']:+.3f} dB → "
            f"{'passes' if v['passes'] else 'fails'} (≥ -{MEAN_LOSS} dB mean, ≥ -{CASE_LOSS} dB "
            "per case)"
        )
    print(f"total {machine['total_wall_s']:.0f} s wall; {args.out}")
    write_json(
        args.out,
        {
            "bm4d": metadata.version("bm4d"),
            "machine": machine,
            "profiles": profiles,
            "cases": list(args.cases),
            "images_per_case": int(df.groupby("case").image_id.nunique().min()),
            "rule": {"mean_loss_db": MEAN_LOSS, "case_loss_db": CASE_LOSS},
            "verdicts": verdicts,
            "summary": json.loads(summary.to_json(orient="records")),
            "records": records,
        },
    )


if __name__ == "__main__":
    main()
