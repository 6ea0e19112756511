"""Check a parameters file without running anything: ``python -m stages.check [params.yaml]``.

Prints ``params.yaml: OK`` and exits 0, or one line per problem (every top-level section's
first error, unknown top-level keys, evaluate's target overrides, the report options) and
exits 1. DVC reruns a stage only when the params it lists change, so a typo in a key no stage
lists (``sead: 3``) is caught here, or by the first stage that runs.
"""

from __future__ import annotations

import argparse
import sys

from stages._common import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stages.check", description="Validate a dlw-bench parameters file."
    )
    parser.add_argument("path", nargs="?", default="params.yaml", help="default: params.yaml")
    args = parser.parse_args(argv)
    from pipeline.config import check_file

    errors = check_file(args.path)
    if errors:
        for line in errors:
            print(line, file=sys.stderr)
        return 1
    print(f"{args.path}: OK")
    return 0


if __name__ == "__main__":
    run("check", lambda: main(sys.argv[1:]))
