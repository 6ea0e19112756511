"""What every stage script does first: logging, and the validated parameters."""

from __future__ import annotations

import logging
import sys

from pipeline.config import ConfigError, Params, load_params


def start(stage: str, path: str = "params.yaml") -> Params:
    logging.basicConfig(level=logging.INFO, format=f"[{stage}] %(message)s", stream=sys.stderr)
    try:
        return load_params(path)
    except ConfigError as exc:
        sys.exit(f"[{stage}] invalid parameters: {exc}")


def run(stage: str, main) -> None:
    """Run ``main``; a bad input ends the stage with one clear line instead of a traceback."""
    try:
        main()
    except (ValueError, FileNotFoundError) as exc:
        sys.exit(f"[{stage}] error: {exc}")
