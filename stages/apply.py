"""Restore an image of your own with a weighting and a target model (not a DVC stage).

    python -m stages.apply INPUT --weighting {unweighted,handcrafted,dlw}
        [--checkpoint models/<method>/<variant>/best.pt] [--target tv] --out OUTDIR
        [--strength 1.0] [--key NAME] [--layout chw|hwc] [--normalise]

``--weighting``: a weighting that needs no truth (``unweighted``, ``handcrafted``) or that of a
registered learned method (``dlw``), which loads its trained part from ``--checkpoint``
(:meth:`pipeline.methods.base.Method.load`, ``torch.load(weights_only=True)``).

INPUT: ``.npy`` (a cube: ``--layout`` chw or hwc, else the shortest of the first and last axes
is the band axis, and a file where that does not decide is refused), ``.png`` / ``.jpg`` /
``.tif`` (grey or RGB) or ``.mat`` (a cube in MATLAB's (H, W, C) order; ``--key`` names the
array). ``--strength`` multiplies the target's reference regularisation strength
(:func:`pipeline.evaluate.apply.scaled_params`); ``--normalise`` maps the image min-max to
[0, 1] first (every model assumes data range 1).
Writes ``OUTDIR/restored.npy``, ``weights.npy`` (float32 (C, H, W)), ``noisy.png``,
``restored.png``, ``weights.png`` (grey for one band, false colour of three bands otherwise) and
``summary.json``, and prints iterations, convergence and times. Reads no ``params.yaml``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.evaluate.apply import (
    BLIND,
    WEIGHTINGS,
    normalise,
    read_image,
    restore,
    write_outputs,
)
from pipeline.models.registry import MODELS

log = logging.getLogger("apply")

# 1st and 99th percentiles beyond these: probably not [0, 1] units (e.g. 0–255 or radiance).
# Noisy images in [0, 1] do leave it (the protocol's test cubes span −0.8 … 1.7 with σ up to
# 70/255 and stripes), but their percentiles stay within −0.47 … 1.0 (every file of
# data/degraded, measured).
_RANGE_WARNING = (-1.5, 2.5)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m stages.apply",
        description="Restore one image or cube with a (learned) weighting and a target model.",
    )
    p.add_argument("input", help="image file: .npy (C, H, W), .png/.jpg/.tif, or .mat (--key)")
    p.add_argument("--weighting", required=True, help=f"one of: {', '.join(WEIGHTINGS)}")
    p.add_argument(
        "--checkpoint",
        help="trained part of a learned weighting (dlw): models/<method>/<variant>/best.pt",
    )
    p.add_argument("--target", default="tv", help=f"one of: {', '.join(MODELS)}")
    p.add_argument("--out", required=True, help="output folder (created; fixed file names)")
    p.add_argument(
        "--strength",
        type=float,
        default=1.0,
        help="multiplier of the target's reference regularisation strength (default 1)",
    )
    p.add_argument("--key", help="name of the array in a .mat file")
    p.add_argument(
        "--layout",
        choices=("chw", "hwc"),
        help="axis order of a .npy cube (default: the shortest of the first/last axes is C)",
    )
    p.add_argument("--normalise", action="store_true", help="min-max the image to [0, 1] first")
    return p


def check_writable(out: str) -> None:
    """Refuse an output folder that cannot be made or written before any work (a solve can
    take minutes); nothing is created here."""
    probe = Path(out)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"--out {out}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: {probe} is not writable")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the command; returns the summary it writes. Bad input → ValueError /
    FileNotFoundError naming the file or value (the ``__main__`` wrapper prints one line)."""
    args = parser().parse_args(argv)
    # Learned weightings (a registered method's; an unknown name is refused by restore).
    learned = [w for w in WEIGHTINGS if w not in BLIND]
    if args.weighting in learned and not args.checkpoint:
        raise ValueError(
            f"--weighting {args.weighting} needs --checkpoint "
            f"models/{args.weighting}/<variant>/best.pt"
        )
    if args.checkpoint and args.weighting not in learned:
        raise ValueError(
            f"--checkpoint is only used by a learned weighting ({', '.join(learned)}), "
            f"not {args.weighting!r}"
        )
    check_writable(args.out)
    noisy = read_image(args.input, args.key, args.layout)
    if noisy.size and not np.any(noisy):
        log.warning("%s: every value is 0 (an empty or black image)", args.input)
    scaled = None
    if args.normalise:
        noisy, lo, hi = normalise(noisy)
        scaled = {"min": lo, "max": hi}
    else:
        lo, hi = np.percentile(noisy, [1, 99])
        if lo < _RANGE_WARNING[0] or hi > _RANGE_WARNING[1]:
            log.warning(
                "%s: 1st–99th percentiles %g … %g: not data range 1, which every model's "
                "strengths assume (use --normalise)",
                args.input,
                lo,
                hi,
            )
    net = None
    if args.weighting in learned:
        from pipeline.methods.registry import get_method

        # torch.load(weights_only=True): a checkpoint cannot run code; eval mode.
        net = get_method(args.weighting).load(args.checkpoint)
    result = restore(
        noisy, weighting=args.weighting, target=args.target, strength=args.strength, net=net
    )
    summary = {
        "input": str(args.input),
        "shape": list(noisy.shape),
        "normalised": scaled,
        "weighting": args.weighting,
        "checkpoint": str(args.checkpoint or ""),
        "target": args.target,
        "strength": args.strength,
        "params": result.params,
        "iterations": result.iterations,
        "converged": result.converged,
        "primal_residual": result.primal_residual,
        "dual_residual": result.dual_residual,
        "weights_time_s": result.weights_time_s,
        "solve_time_s": result.solve_time_s,
    }
    paths = write_outputs(args.out, noisy, result, summary)
    print(
        f"{args.target} ({args.weighting}, strength ×{args.strength:g}) on {noisy.shape}: "
        f"{result.iterations} iterations, converged {result.converged} (residuals "
        f"{result.primal_residual:.2e} / {result.dual_residual:.2e}), weights "
        f"{result.weights_time_s:.2f} s, solve {result.solve_time_s:.2f} s"
    )
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return summary


def cli(argv: list[str] | None = None) -> int:
    """``main`` for the command line: any failure ends in one line naming what failed (the
    stages' :func:`stages._common.describe`) and exit status 1 (2 for bad arguments, as
    argparse; 130 for Ctrl-C), never a traceback (``DLW_DEBUG=1`` shows it)."""
    from stages._common import INTERRUPTED, debugging, describe

    logging.basicConfig(level=logging.INFO, format="[apply] %(message)s", stream=sys.stderr)
    try:
        main(argv)
    except KeyboardInterrupt:
        print("[apply] interrupted", file=sys.stderr)
        return INTERRUPTED
    except Exception as exc:
        if debugging():
            import traceback

            traceback.print_exc()
        # A decoder's multi-line message (e.g. imageio's list of plugins) on one line.
        print(f"[apply] error: {' '.join(describe(exc).split())}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
