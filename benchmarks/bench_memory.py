"""Peak memory of a large fit: 10,000,000 rows, 100,000 groups, random intercept and slope.

Runs the fit in a fresh process and reads the peak resident set size (ru_maxrss); reports it
against the size of the model's numeric columns (y, x and the group codes, 8 bytes each).

    python benchmarks/bench_memory.py [--rows 10000000] [--groups 100000] [--write]

--write appends the figures to BENCHMARKS.md. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    import numpy as np, pandas as pd
    rows, groups = int(sys.argv[1]), int(sys.argv[2])
    rng = np.random.default_rng(2026)
    g = rng.integers(0, groups, rows)
    x = rng.normal(size=rows)
    a = rng.normal(scale=0.5, size=groups)
    b = rng.normal(scale=0.2, size=groups)
    y = 1.0 + a[g] + (0.5 + b[g]) * x + rng.normal(size=rows)
    df = pd.DataFrame({"y": y, "x": x, "g": g})
    del g, x, y, a, b
    import multilevel
    sleep = multilevel.datasets.load("sleepstudy")
    multilevel.fit("Reaction ~ Days + (Days | Subject)", sleep)  # imports, first-call set-up
    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    before = rss()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t = time.perf_counter()
    m = multilevel.fit("y ~ x + (1 + x | g)", df)
    secs = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"before": before, "peak_before": peak_before, "peak": peak,
                      "seconds": secs, "objective": m.objective, "converged": m.converged,
                      "columns_bytes": int(df.memory_usage(index=False).sum())}))
    """
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--groups", type=int, default=100_000)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(a.rows), str(a.groups)],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        sys.exit(out.stderr)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    mb = 1024**2
    cols = r["columns_bytes"]
    extra = r["peak"] - r["before"]
    lines = [
        f"rows {a.rows:,}, groups {a.groups:,}: fit in {r['seconds']:.2f} s "
        f"(objective {r['objective']:.4f}, converged {r['converged']})",
        f"numeric columns (y, x, g): {cols / mb:.0f} MB",
        f"resident before the fit: {r['before'] / mb:.0f} MB; peak: {r['peak'] / mb:.0f} MB",
        f"peak added by the fit: {extra / mb:.0f} MB = {extra / cols:.2f} x the columns",
    ]
    print("\n".join(lines))
    if a.write:
        cmd = "python benchmarks/bench_memory.py " + " ".join(sys.argv[1:])
        with open(os.path.join(os.path.dirname(__file__), "..", "BENCHMARKS.md"), "a") as f:
            f.write(f"\n## Memory ({time.strftime('%Y-%m-%d')})\n\n`{cmd}`\n\n")
            f.write("\n".join(f"- {x}" for x in lines) + "\n")


if __name__ == "__main__":
    main()
