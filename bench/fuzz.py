"""The long fuzz run of the landing contract (outside `make test`).

Runs the hypothesis properties of tests/test_fuzz_landing.py with the `long` profile:
`python -m bench.fuzz --examples 10000` tries that many generated inputs per property (events
files, line independence, users CSVs) and prints the result line that docs/FUZZING.md records.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--examples",
        type=int,
        default=10_000,
        help="generated files per file property (the line properties scale alike: x1/3, x2.5)",
    )
    args = parser.parse_args(argv)
    env = {**os.environ, "HYPOTHESIS_PROFILE": "long", "REFINERY_FUZZ_EXAMPLES": str(args.examples)}
    started = time.monotonic()
    code = subprocess.call(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:hydra_pytest",
            "-p",
            "no:cacheprovider",
            "tests/test_fuzz_landing.py",
            "--hypothesis-show-statistics",
        ],
        env=env,
    )
    minutes = (time.monotonic() - started) / 60
    verdict = "no failure" if code == 0 else f"FAILED (pytest exit {code})"
    scale = args.examples / 120
    print(
        f"fuzz: {args.examples} events files, {args.examples} users CSVs, {int(40 * scale)} "
        f"neighbour comparisons, {int(300 * scale)} fast-path batches; {minutes:.1f} min: {verdict}"
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
