"""Wall time of ``sqakd-edge --help`` (and of each command's ``--help``): the CLI must answer in < 2 s.

    python benchmarks/cli_startup.py [--runs 10]

Runs ``python -m sqakd_edge ... --help`` in fresh processes and reports the median and max wall time.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def time_command(args: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "sqakd_edge", *args], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    commands = [["--help"]] + [[c, "--help"] for c in ("train", "demo", "export", "check", "bench", "build")]
    print(f"{'command':<22} {'median s':>9} {'max s':>7}")
    for cmd in commands:
        try:
            t = time_command(cmd, args.runs)
        except subprocess.CalledProcessError:
            continue  # a command this checkout does not have
        print(f"{' '.join(cmd):<22} {statistics.median(t):>9.3f} {max(t):>7.3f}")


if __name__ == "__main__":
    main()
