"""What every stage script does first (logging, the validated parameters) and last (any failure
becomes one line naming the file, key or value, and a non-zero exit status).

``DLW_DEBUG=1`` in the environment shows debug logging and the full traceback of a failure;
otherwise the traceback is logged at debug level only (hidden at the default INFO level).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.config import ConfigError, Params, load_params

log = logging.getLogger("stages")

# Exit status of a stage stopped by Ctrl-C (SIGINT), as a shell reports it: 128 + 2.
INTERRUPTED = 130

# What rerunning a stopped stage does: a stage writes its outs only when it finishes (DVC
# removes them before it starts one), so nothing half-written is left; train continues its Ray
# experiment from its checkpoints.
RERUN = {
    "train": "rerun it (dvc repro) to resume the experiment from its last checkpoints",
}
RERUN_DEFAULT = "rerun it (dvc repro) to start it again; it writes its outs only when it finishes"

# The temporary names of pipeline.io's atomic writes (``.<name>.<random>.tmp``).
TEMPORARY = re.compile(r"^\..+\.tmp$")


def debugging() -> bool:
    return os.environ.get("DLW_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def start(stage: str, path: str = "params.yaml") -> Params:
    level = logging.DEBUG if debugging() else logging.INFO
    logging.basicConfig(level=level, format=f"[{stage}] %(message)s", stream=sys.stderr)
    try:
        return load_params(path)
    except ConfigError as exc:
        sys.exit(f"[{stage}] invalid parameters: {exc}")


def run(stage: str, main: Callable[[], Any]) -> None:
    """Run ``main``; a failure ends the stage with one clear line instead of a traceback, and
    exit status 1 (130 when interrupted); a non-zero int that ``main`` returns is the exit
    status."""
    try:
        status = main()
    except KeyboardInterrupt:
        if debugging():
            traceback.print_exc()
        sys.stderr.write(f"[{stage}] interrupted; {RERUN.get(stage, RERUN_DEFAULT)}\n")
        sys.exit(INTERRUPTED)
    except Exception as exc:  # every failure: one line (DLW_DEBUG=1: the traceback)
        if debugging():
            traceback.print_exc()
        else:
            log.debug("traceback of the failure", exc_info=True)
        sys.exit(f"[{stage}] error: {describe(exc)}")
    if isinstance(status, int) and not isinstance(status, bool) and status:
        sys.exit(status)  # a main that reports its own outcome (stages.check: 1 on problems)


def describe(exc: BaseException) -> str:
    """One line naming what failed: the message of the project's own errors (they name the
    key, value or file), the path of a file-system error, the short form of MLflow's and Ray's
    errors, and the type and first line of anything else."""
    if isinstance(exc, ConfigError):
        return f"invalid parameters: {exc}"
    module = type(exc).__module__ or ""
    if module.startswith("ray"):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException) and cause is not exc:
            return f"in a Ray task: {describe(cause)}"
        return f"Ray: {type(exc).__name__}: {_last_error_line(str(exc))}"
    if module.startswith("mlflow"):
        message = getattr(exc, "message", None) or str(exc)
        return f"MLflow: {_first_line(message)} (see tracking.uri / $MLFLOW_TRACKING_URI)"
    text = str(exc).strip()
    if isinstance(exc, OSError):
        if exc.filename is not None:  # e.g. an unwritable --out or a missing input
            what = exc.strerror or type(exc).__name__
            name = Path(os.fsdecode(exc.filename))
            if TEMPORARY.match(name.name):  # an atomic write's temporary: name the folder
                return f"{name.parent}: {what} (cannot write a file there)"
            target = f" → {exc.filename2}" if exc.filename2 is not None else ""
            return f"{exc.filename}{target}: {what}"
        if exc.errno is None and text:  # raised by the project with its own message
            return text
    if isinstance(exc, ValueError) and text:
        return text
    hint = "" if debugging() else " (DLW_DEBUG=1 shows the traceback)"
    return f"{type(exc).__name__}: {_first_line(text)}{hint}"


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return lines[0] if lines else "(no message)"


def _last_error_line(text: str) -> str:
    # Ray's errors embed the remote traceback; its last "...Error: message" line is the cause.
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error" in ln and ":" in ln:
            return ln
    return lines[-1] if lines else "(no message)"
