"""MLflow runs of the evaluate stage: one per (weighting, restorer, seeds of their learned parts),
with the chosen strengths and per-case mean metrics, a small gallery image, and provenance tags.

The driver is the only writer (two processes creating a SQLite store at once collide in its
migrations); runs go through :class:`MlflowClient` in batches, so ~50 runs take seconds on the
SQLite store. The stage calls this after its Parquet outs are written: tracking records the
results, it never decides whether they are kept.
"""

from __future__ import annotations

import io
import logging
import math
import tempfile
from pathlib import Path

import numpy as np

from pipeline.evaluate.cells import split_item, weight_key
from pipeline.evaluate.results import run_key

log = logging.getLogger(__name__)

__all__ = ["log_runs"]

METRICS = ("mpsnr", "mssim", "sam", "ergas")


def _gallery_png(run: dict, key: tuple) -> bytes | None:
    """Noisy band, weight map and restoration of the first gallery image (last case), side by
    side (4× nearest-neighbour, greys in [0, 1], the map in magma up to its 99th percentile),
    with a caption line. Drawn with Pillow: one picture per MLflow run, so it must be cheap."""
    picks = [r for r in run["test"] if "x_band" in r and run_key(r) == key]
    if not picks:
        return None
    from matplotlib import colormaps
    from PIL import Image, ImageDraw

    weighting, seed, restorer, _ = key
    r = sorted(picks, key=lambda r: r["item"])[-1]
    item, band = run["items"][r["item"]], run["bands"][r["item"]]
    w = run["maps"].get(weight_key(weighting, seed, r["item"]))
    panels = [("noisy", item["noisy"][band]), ("restored", r["x_band"])]
    if w is not None:
        panels.insert(1, ("weights", w[band]))
    scale, pad, top = 4, 6, 28
    tiles = []
    for title, img in panels:
        a = np.asarray(img, dtype=np.float64)
        if title == "weights":
            vmax = float(np.percentile(a, 99)) or 1.0
            rgb = colormaps["magma"](np.clip(a / vmax, 0, 1))[..., :3]
        else:
            rgb = np.repeat(np.clip(a, 0, 1)[..., None], 3, axis=2)
        tile = Image.fromarray(np.round(rgb * 255).astype(np.uint8), "RGB")
        tiles.append((title, tile.resize((a.shape[1] * scale, a.shape[0] * scale), Image.NEAREST)))
    width = sum(t.width for _, t in tiles) + pad * (len(tiles) + 1)
    height = max(t.height for _, t in tiles) + top + pad
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, 2), f"{r['item']} · {weighting} · {restorer} · band {band}", fill="black")
    x = pad
    for title, tile in tiles:
        draw.text((x, 15), title, fill="black")
        canvas.paste(tile, (x, top))
        x += tile.width + pad
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


def log_runs(
    uri: str,
    experiment: str,
    root: Path,
    run: dict,
    tags: dict[str, str],
    ids: dict | None = None,
) -> dict:
    """Create the runs; returns ``{(weighting, its seed, restorer, its seed): run_id}``. Each
    finished run is added to ``ids`` as it is logged, so a caller keeps the ids of the runs logged
    before an error."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    from pipeline.tracking import ensure_experiment

    experiment_id = ensure_experiment(uri, experiment, root)
    client = MlflowClient(tracking_uri=uri)
    groups: dict[tuple, list[dict]] = {}
    for r in run["test"]:
        groups.setdefault(run_key(r), []).append(r)
    weightings = {(w.label, w.seed): w for w in run["weightings"]}
    restorers = {r.key: r for r in run["restorers"]}
    ids = {} if ids is None else ids
    for key, records in sorted(groups.items()):
        weighting, seed, restorer, restorer_seed = key
        wt, rs = weightings.get((weighting, seed)), restorers[(restorer, restorer_seed)]
        parts = ((weighting, seed), (restorer, restorer_seed))
        seeds = [f"{n} seed {k}" for n, k in parts if k >= 0]
        name = f"evaluate {weighting} → {restorer}" + (f" ({', '.join(seeds)})" if seeds else "")
        tag_list = {**tags, "stage": "evaluate", "weighting": weighting, "restorer": restorer}
        mlrun = client.create_run(experiment_id, run_name=name, tags=tag_list)
        rid = mlrun.info.run_id
        params = [
            Param("weighting", weighting),
            Param("weighting_method", wt.method if wt else ""),
            Param("weighting_seed", str(seed)),
            Param("weighting_checkpoint", wt.path if wt else ""),
            Param("restorer", restorer),
            Param("restorer_method", rs.method),
            Param("restorer_role", rs.role),
            Param("restorer_seed", str(restorer_seed)),
            Param("restorer_checkpoint", rs.path),
        ]
        metrics = []
        by_case: dict[str, list[dict]] = {}
        for r in records:
            by_case.setdefault(split_item(r["item"])[1], []).append(r)
        for case, rs in sorted(by_case.items()):
            m = rs[0]["multiplier"]
            params.append(Param(f"strength.{case}", "n/a" if math.isnan(m) else f"{m:g}"))
            for metric in METRICS:
                value = float(np.mean([x[metric] for x in rs]))
                metrics.append(Metric(f"{case}.{metric}", value, 0, 0))
            conv = float(np.mean([x["converged"] for x in rs]))
            metrics.append(Metric(f"{case}.converged_fraction", conv, 0, 0))
        for metric in METRICS:
            value = float(np.mean([x[metric] for x in records]))
            metrics.append(Metric(f"mean.{metric}", value, 0, 0))
        client.log_batch(
            rid, metrics=metrics, params=params, tags=[RunTag("n_cells", str(len(records)))]
        )
        png = _gallery_png(run, key)
        if png is not None:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "gallery.png"
                path.write_bytes(png)
                client.log_artifact(rid, str(path))
        client.set_terminated(rid, "FINISHED")
        ids[key] = rid
    log.info("%d MLflow runs logged to %s (experiment %s)", len(ids), uri, experiment)
    return ids
