#!/usr/bin/env bash
# The project's entry points. Each command first creates or updates the virtual environment
# (.venv, or $DLW_VENV) from the pinned requirement files, so a fresh machine needs nothing else.
#   ./tasks.sh repro [dvc repro args]   run the pipeline (dvc repro) on params.yaml
#   ./tasks.sh test  [pytest args]      lint, then run the test suite
#   ./tasks.sh env                      only build/update the environment
#   ./tasks.sh run CMD ...              run any command inside the environment (dvc, mlflow, python)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

VENV="${DLW_VENV:-.venv}"
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac
PYTHON="${PYTHON:-python3}"

ensure_env() {
  local stamp
  stamp="$(cat requirements-torch.txt requirements.lock pyproject.toml | sha256sum | cut -c1-16)"
  if [ ! -x "$VENV/bin/python" ]; then
    echo "[tasks] creating virtual environment $VENV" >&2
    "$PYTHON" -m venv "$VENV"
  fi
  if [ "$(cat "$VENV/.dlw-stamp" 2>/dev/null || true)" != "$stamp" ]; then
    echo "[tasks] installing pinned requirements into $VENV (a few minutes the first time)" >&2
    # torch first and alone, so its pin (CPU by default) is what every later resolve sees.
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-torch.txt
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
      -r requirements.lock -c requirements-torch.txt
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
      --no-deps --no-build-isolation -e .
    echo "$stamp" > "$VENV/.dlw-stamp"
  fi
  export PATH="$VENV/bin:$PATH"
  export VIRTUAL_ENV="$VENV"
  # No telemetry from any engine; local Ray without auth.
  export DVC_NO_ANALYTICS=1 RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled
  export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1
  # Many small torch ops slow down badly when OpenMP threads busy-wait beside another process
  # (benchmarks/models.py measured up to 30x); passive waiting keeps concurrent trials fair.
  export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
  repro) ensure_env; exec dvc repro "$@" ;;
  test)
    ensure_env
    ruff check pipeline stages tests benchmarks
    ruff format --check pipeline stages tests benchmarks
    exec python -m pytest "$@"
    ;;
  env) ensure_env ;;
  run) ensure_env; exec "$@" ;;
  *) echo "usage: ./tasks.sh {repro|test|env|run} [args...]" >&2; exit 2 ;;
esac
