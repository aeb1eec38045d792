"""Start-up time: ``import multilevel`` and a whole CLI fit, against ``import numpy, pandas``.

Each command runs as a fresh process, the commands interleaved round by round so that a
change in the machine's load touches all of them alike; the figure per command is the
median wall time over the rounds, and the ratio is to the median of
``python -c "import numpy, pandas"`` (the floor: every user of the package pays it).

    python benchmarks/bench_startup.py                # 21 rounds
    python benchmarks/bench_startup.py --rounds 41

This is a benchmark, not a test: it asserts nothing and CI does not run it. The targets
(issue 9): ``import multilevel`` at most 1.1x, the CLI fit at most 1.5x.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "import numpy, pandas": [sys.executable, "-c", "import numpy, pandas"],
    "import multilevel": [sys.executable, "-c", "import multilevel"],
    "multilevel fit sleepstudy": [
        shutil.which("multilevel") or "multilevel",
        "fit",
        "sleepstudy",
        "Reaction ~ Days + (Days | Subject)",
    ],
}


#: the children may write and use bytecode caches (__pycache__), as an installed package has
#: them: a machine with PYTHONDONTWRITEBYTECODE set would otherwise compile our modules from
#: source at every start while numpy's and pandas' come compiled from their wheels
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=ENV)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=21)
    args = ap.parse_args()
    times: dict[str, list[float]] = {k: [] for k in COMMANDS}
    for cmd in COMMANDS.values():  # warm the file cache and write the bytecode caches
        run(cmd)
    for _ in range(args.rounds):
        for name, cmd in COMMANDS.items():
            times[name].append(run(cmd))
    base = statistics.median(times["import numpy, pandas"])
    rounds = f"(rounds: {args.rounds}, nproc {os.cpu_count()})"
    print(f"{'command':32} {'median':>9} {'ratio':>7}   {rounds}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:32} {med * 1e3:7.0f} ms {med / base:6.2f}x")


if __name__ == "__main__":
    main()
