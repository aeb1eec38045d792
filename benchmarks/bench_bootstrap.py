"""Parametric bootstrap: replicates per second for ``multilevel.bootstrap`` and, in the same run
when ``Rscript`` with lme4 is on the PATH, lme4's ``bootMer`` (target: at least 10x its rate).

Each tool simulates from and refits the same model fitted to the same data, with the fit's
criterion (REML). Ours is timed in-process after the fit (one short warm-up run first), with
1 and 2 worker processes; lme4 is timed inside R (``system.time`` around ``bootMer`` only:
R's start-up, the CSV read and the fit are not counted), serially and, with ``--lme4-parallel``,
with ``parallel = "multicore"`` on 2 cores. Without Rscript or lme4 the lme4 rows say so and the
script still succeeds.

    python benchmarks/bench_bootstrap.py                        # sleepstudy, 1000 replicates
    python benchmarks/bench_bootstrap.py --models sleepstudy penicillin radon --n 500

This is a benchmark, not a test: it asserts nothing and CI does not run it. Run it on an idle
machine; the load average is printed with the results.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import multilevel
from multilevel import datasets
from multilevel.inference.bootstrap import bootstrap


@dataclass
class Model:
    key: str
    data: str
    formula: str
    factors: tuple[str, ...]


MODELS = {
    "sleepstudy": Model(
        "sleepstudy", "sleepstudy", "Reaction ~ Days + (Days | Subject)", ("Subject",)
    ),
    "penicillin": Model(
        "penicillin",
        "penicillin",
        "diameter ~ 1 + (1 | plate) + (1 | sample)",
        ("plate", "sample"),
    ),
    "radon": Model(
        "radon", "radon", "log_radon ~ floor * log_uranium + (1 + floor | county)", ("county",)
    ),
}

R_SCRIPT = r"""
suppressPackageStartupMessages(library(lme4))
d <- read.csv({csv}, stringsAsFactors = FALSE)
for (g in c({factors})) d[[g]] <- factor(d[[g]])
m <- lmer({formula}, data = d, REML = TRUE)
f <- function(x) c(getME(x, "theta"), sigma(x), fixef(x))
invisible(bootMer(m, f, nsim = 5, seed = 1))   # warm-up
el <- system.time(b <- bootMer(m, f, nsim = {n}, seed = 1))[["elapsed"]]
cat(sprintf("SERIAL %.6f %d\n", el, sum(complete.cases(b$t))))
if ({parallel}) {{
  el <- system.time(b <- bootMer(m, f, nsim = {n}, seed = 1, parallel = "multicore",
                                 ncpus = 2))[["elapsed"]]
  cat(sprintf("PARALLEL %.6f %d\n", el, sum(complete.cases(b$t))))
}}
cat(sprintf("VERSION %s\n", as.character(packageVersion("lme4"))))
"""


def _r_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def lme4_available() -> str | None:
    """Why lme4 cannot run (None when it can)."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        return "no Rscript on PATH"
    try:
        proc = subprocess.run(
            [rscript, "--vanilla", "-e", "suppressPackageStartupMessages(library(lme4))"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (subprocess.SubprocessError, OSError) as e:
        return f"Rscript failed to start ({e})"
    if proc.returncode != 0:
        return "lme4 is not installed in R"
    return None


def run_lme4(model: Model, n: int, parallel: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_boot_") as tmp:
        csv = Path(tmp) / f"{model.key}.csv"
        datasets.load(model.data).to_csv(csv, index=False)
        script = Path(tmp) / "boot.R"
        script.write_text(
            R_SCRIPT.format(
                csv=_r_str(str(csv)),
                factors=", ".join(_r_str(f) for f in model.factors),
                formula=model.formula,
                n=n,
                parallel="TRUE" if parallel else "FALSE",
            )
        )
        proc = subprocess.run(
            [shutil.which("Rscript"), "--vanilla", str(script)],
            capture_output=True,
            text=True,
            timeout=3600,
        )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()[-300:]}
    out: dict = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if parts and parts[0] in ("SERIAL", "PARALLEL"):
            out[parts[0].lower()] = (float(parts[1]), int(parts[2]))
        elif parts and parts[0] == "VERSION":
            out["version"] = parts[1]
    return out


def run_ours(model: Model, n: int, workers: int) -> tuple[float, int]:
    m = multilevel.fit(model.formula, datasets.load(model.data))
    bootstrap(m, n=5, seed=0, workers=1, progress=False)  # warm-up
    t0 = time.perf_counter()
    res = bootstrap(m, n=n, seed=1, workers=workers, progress=False)
    return time.perf_counter() - t0, res.n - res.failed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["sleepstudy"], choices=sorted(MODELS))
    ap.add_argument("--n", type=int, default=1000, help="replicates for us (default 1000)")
    ap.add_argument(
        "--lme4-n", type=int, default=None, help="replicates for lme4 (default: as --n)"
    )
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--lme4-parallel", action="store_true", help="also bootMer on 2 cores")
    ap.add_argument("--no-lme4", action="store_true", help="skip lme4")
    args = ap.parse_args(argv)

    why = "skipped (--no-lme4)" if args.no_lme4 else lme4_available()
    print(
        f"# bootstrap benchmark: {platform.platform()}, Python {platform.python_version()}, "
        f"numpy {np.__version__}, multilevel {multilevel.__version__}, nproc {os.cpu_count()}, "
        f"load {os.getloadavg()[0]:.2f}"
    )
    for key in args.models:
        model = MODELS[key]
        print(f"\n## {key}: {model.formula} (REML)")
        print(f"{'tool':<24} {'replicates':>10} {'seconds':>9} {'rep/s':>9}")
        rates = {}
        for w in args.workers:
            sec, ok = run_ours(model, args.n, w)
            rates[f"ours, {w} worker(s)"] = ok / sec
            print(f"{'ours, ' + str(w) + ' worker(s)':<24} {ok:>10} {sec:>9.2f} {ok / sec:>9.1f}")
        if why is None:
            n = args.lme4_n or args.n
            r = run_lme4(model, n, args.lme4_parallel)
            if "error" in r:
                print(f"{'lme4 bootMer':<24} failed: {r['error']}")
            for kind, label in (("serial", "lme4 bootMer"), ("parallel", "lme4 bootMer, 2 cores")):
                if kind in r:
                    sec, ok = r[kind]
                    rates[label] = ok / sec
                    print(f"{label:<24} {ok:>10} {sec:>9.2f} {ok / sec:>9.1f}")
            if "lme4 bootMer" in rates:
                base = rates["lme4 bootMer"]
                best = max(v for k, v in rates.items() if k.startswith("ours"))
                print(
                    f"ours / lme4 (lme4 {r.get('version', '?')}, serial): "
                    + ", ".join(
                        f"{k}: {v / base:.1f}x" for k, v in rates.items() if k.startswith("ours")
                    )
                    + f"; best {best / base:.1f}x (target >= 10x)"
                )
        else:
            print(f"{'lme4 bootMer':<24} not run: {why}")
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
