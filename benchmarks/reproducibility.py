"""How far trained weight nets and their scores move when only the arithmetic changes.

Usage: ``python benchmarks/reproducibility.py [--sets tv,nn+tvs] [--threads 1,2]``; needs
``data/clean`` (``./tasks.sh run dvc repro prepare``); prints a table and writes
``benchmarks/results/reproducibility.json``.

The data stages are bit-exact by construction (every stored value is a function of the params
and the code: ``tests/test_data_bytes.py``). Training is not: a different thread count (or CPU,
or BLAS build) sums convolutions in another order, the rounding differences feed back through
120 Adam steps, and the net ends elsewhere. This script trains the same trial (default params of
``params.yaml``, source sets ``--sets``) in fresh processes with each thread count of
``--threads`` — the same kind of change as moving to another machine — and compares, against
the first thread count:

The net compared is the one the train stage would save: the trial's best epoch on val.

* ``dtheta``: max |θ − θ₁| over the net's parameters, relative to max |θ₁|;
* ``dval``: max |Δ val MPSNR| over epochs and validation models (dB), the figure that
  selects checkpoints;
* ``dw``: max |w − w₁| / max |w₁| of the final weight maps on the test tiles under the
  training noise;
* ``dtest_<target>``: max |Δ MPSNR| (dB) over those tiles of the converged target solved with
  each run's weight map (the quantity the leaderboard reports).

Each configuration runs in a fresh process (``benchmarks/_worker.py``) with
``OMP_NUM_THREADS`` and ``torch.set_num_threads`` set to its thread count.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGETS = ("tv", "e3dtv")
RESULT = ROOT / "benchmarks" / "results" / "reproducibility.json"


def train_and_score(cfg: dict) -> dict:
    """One fresh process: train the trial, save θ, score val per epoch and the test tiles."""
    import torch

    from pipeline.config import load_params
    from pipeline.evaluate.metrics import mpsnr
    from pipeline.methods.dlw.data import validation_set
    from pipeline.models import build_model
    from pipeline.train.data import load_tiles

    torch.set_num_threads(cfg["threads"])
    params = load_params(ROOT / "params.yaml")
    method = params.train.method("dlw")
    train = method.params
    data = ROOT / "data" / "clean"
    # The trial's Tune config as the runner builds it (pipeline.train.runner.param_space), and
    # the trainer the trainable makes of it.
    config = {
        "variant": cfg["source_set"],
        "seed_index": 0,
        **train.constants(),
        **method.trial_config(),
    }
    context = {"seed": params.seed, "data_dir": str(data), "device": "cpu"}
    start = time.perf_counter()
    trainer = method.trainer(config, context)  # set-up included: the validation set's draws
    for _ in range(train.epochs):
        trainer.run_epoch()
    seconds = time.perf_counter() - start

    # The test tiles under the training noise (a fixed draw), restored by converged targets.
    test = validation_set(
        load_tiles(data, "test"), seed=params.seed, patches=1, patch_size=32, noise=train.noise
    )
    noisy = torch.from_numpy(test.noisy)
    # The net the trial hands on: its best epoch on val (what the train stage saves).
    selected, state = trainer.best_state()
    trainer.net.load_state_dict(state)
    w = trainer.weights(noisy)
    scores = {}
    for target in TARGETS:
        overrides = dict(params.evaluate.restorers.get(target, {}))
        model = build_model(target, **overrides)
        with torch.no_grad():
            x = model.solve(noisy.double(), w.double(), converge=True).x.float().numpy()
        scores[target] = [mpsnr(c, xi) for c, xi in zip(test.clean, x, strict=True)]
    out = Path(cfg["out"])
    np.savez(out, w=w.numpy(), **{k: v.numpy() for k, v in trainer.net.state_dict().items()})
    val_keys = [k for k in trainer.history[0] if k.startswith("val_mpsnr_")]
    return {
        **cfg,
        "seconds": seconds,
        "val": [[h[k] for k in val_keys] for h in trainer.history],
        "val_mpsnr": [h["val_mpsnr"] for h in trainer.history],
        "lr_retries": [h["lr_retries"] for h in trainer.history],
        "selected_epoch": selected,
        "test": scores,
    }


def compare(a: dict, b: dict) -> dict:
    pa, pb = np.load(a["out"]), np.load(b["out"])
    keys = [k for k in pa.files if k != "w"]
    theta_scale = max(float(np.abs(pa[k]).max()) for k in keys)
    dtheta = max(float(np.abs(pa[k] - pb[k]).max()) for k in keys) / theta_scale
    dw = float(np.abs(pa["w"] - pb["w"]).max() / np.abs(pa["w"]).max())
    dval = float(np.abs(np.asarray(a["val"]) - np.asarray(b["val"])).max())
    row = {"dtheta": dtheta, "dw": dw, "dval": dval}
    for t in TARGETS:
        row[f"dtest_{t}"] = float(np.abs(np.subtract(a["test"][t], b["test"][t])).max())
    return row


def main() -> None:
    from _worker import run_config  # beside this script, as the other benchmarks

    from pipeline.io import write_json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="tv,nn+tvs")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(train_and_score(json.loads(args.worker))))
        return
    if not (ROOT / "data" / "clean" / "manifest.parquet").exists():
        sys.exit("data/clean is missing: run `./tasks.sh run dvc repro prepare` first")
    threads = [int(t) for t in args.threads.split(",")]
    tmp = ROOT / "benchmarks" / "results" / ".reproducibility"
    tmp.mkdir(parents=True, exist_ok=True)
    rows = []
    for source_set in args.sets.split(","):
        runs = []
        for t in threads:
            out = tmp / f"{source_set}-t{t}.npz"
            cfg = {"source_set": source_set, "threads": t, "out": str(out)}
            res = run_config(__file__, cfg, t)
            if "error" in res:
                sys.exit(f"{source_set} with {t} threads failed: {res['error']}")
            runs.append(res)
        for res in runs[1:]:
            rows.append(
                {
                    "source_set": source_set,
                    "threads": f"{runs[0]['threads']} vs {res['threads']}",
                    "seconds": [runs[0]["seconds"], res["seconds"]],
                    "val_mpsnr": [runs[0]["val_mpsnr"], res["val_mpsnr"]],
                    "lr_retries": [runs[0]["lr_retries"], res["lr_retries"]],
                    "selected_epoch": [runs[0]["selected_epoch"], res["selected_epoch"]],
                    **compare(runs[0], res),
                }
            )
    header = ["source set", "threads", "dtheta", "dw", "dval dB"] + [
        f"dtest {t} dB" for t in TARGETS
    ]
    print(" | ".join(header))
    for r in rows:
        cells = [r["source_set"], r["threads"], f"{r['dtheta']:.2e}", f"{r['dw']:.2e}"]
        cells += [f"{r['dval']:.4f}"] + [f"{r[f'dtest_{t}']:.4f}" for t in TARGETS]
        print(" | ".join(cells))
    write_json(
        RESULT,
        {
            "machine": {"platform": platform.platform(), "processor": platform.processor()},
            "rows": rows,
        },
    )
    for f in tmp.glob("*.npz"):
        f.unlink()
    tmp.rmdir()
    print(f"wrote {RESULT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
