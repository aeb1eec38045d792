"""Peak memory of a large fit: 10,000,000 rows, 100,000 groups, random intercept and slope.

Runs the fit in a fresh process, resets the kernel's high-water mark of resident memory just
before the fit and reads it after (VmHWM; ru_maxrss where the reset is not allowed), and
reports the peak added by the fit against the size of the model's numeric columns (y, x and
the group codes, 8 bytes each), and the whole process's peak, interpreter and data included.

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
    def status(field):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    # reset the high-water mark (Linux >= 4.0), so that the peak is the fit's and not the
    # data generation's above; ru_maxrss cannot be reset
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    before = status("VmRSS")
    t = time.perf_counter()
    m = multilevel.fit("y ~ x + (1 + x | g)", df)
    secs = time.perf_counter() - t
    peak = status("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"before": before, "reset": reset, "peak": peak,
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
    how = "VmHWM after a reset" if r["reset"] else "ru_maxrss, not reset: an upper bound"
    lines = [
        f"rows {a.rows:,}, groups {a.groups:,}: fit in {r['seconds']:.2f} s "
        f"(objective {r['objective']:.4f}, converged {r['converged']})",
        f"numeric columns (y, x, g): {cols / mb:.0f} MB",
        f"resident before the fit: {r['before'] / mb:.0f} MB (interpreter, libraries, data); "
        f"peak during the fit ({how}): {r['peak'] / mb:.0f} MB",
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
