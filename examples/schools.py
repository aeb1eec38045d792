"""The seed's school example on simulated data: students i in schools j,

    y_i = α_j[i] + β_j[i] x_i + ε_i,   α_j = a0 + b0 u_j + η_j1,   β_j = a1 + b1 u_j + η_j2,

drawn with known a0, b0, a1, b1, Σ and σ_y, then fitted as a two-level model.

    python examples/schools.py [FIGURE_DIR]      (default: examples/figures/)
"""

import sys
import time
from pathlib import Path

import numpy as np

import multilevel
from multilevel.simulate_schools import simulate_schools

TRUTH = dict(a0=50.0, b0=5.0, a1=2.0, b1=1.0, sigma_y=8.0)
SIGMA = [[16.0, 2.4], [2.4, 1.0]]  # SD(η1) = 4, SD(η2) = 1, correlation 0.6


def main(outdir: Path) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    sizes = np.random.default_rng(1).integers(2, 60, size=60)  # small and large schools
    df = simulate_schools(60, sizes, **TRUTH, Sigma=SIGMA, seed=2024)
    truth = df.attrs["truth"]
    print(f"{len(df)} students in {df.school.nunique()} schools\n")

    m = multilevel.fit("y ~ x", df, group="school", group_formula="~ u", data_name="simulated")
    print(m.summary(max_groups=8))

    print("\nLevel-2 coefficients against the truth:")
    gl = m.group_level.set_index("symbol")
    for sym in ("a0", "b0", "a1", "b1"):
        est, se = gl.loc[sym, "estimate"], gl.loc[sym, "se"]
        inside = abs(est - truth[sym]) <= 1.96 * se
        print(f"  {sym}: true {truth[sym]:7.3f}  estimate {est:7.3f} ± {1.96 * se:.3f}"
              f"  {'covers' if inside else 'misses'}")  # fmt: skip
    print(f"  SD(η): true {np.sqrt(np.diag(SIGMA))}, estimated {m.eta_sd.round(3).tolist()}")
    print(f"  σ_y: true {TRUTH['sigma_y']}, estimated {m.sigma_y:.3f}")

    ct = m.coef_table()
    for name, key in (("(Intercept)", "alpha"), ("x", "beta")):
        err = np.abs(ct[name].to_numpy() - np.array(truth[key]))
        cover = np.mean(err <= 1.96 * ct[f"se({name})"].to_numpy())
        print(f"  {key}_j: 95% intervals cover {cover:.0%} of the {len(ct)} true values")

    print("\nR² and pooling factor λ (Gelman & Pardoe 2006):")
    print(m.pooling(ndraws=1000, seed=1).round(3).to_string(index=False))

    for name, fig in [
        ("schools_pooling.png", m.plot_pooling()),
        ("schools_group_regression.png", m.plot_group_regression()),
        ("schools_slopes.png", m.plot_group_regression("x")),
        ("schools_shrinkage.png", m.plot_shrinkage("x")),
        ("schools_caterpillar.png", m.plot_caterpillar(labels=False)),
    ]:
        fig.savefig(outdir / name, dpi=110)
        print(f"  wrote {outdir / name}")
    print(f"\n(ran in {time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "figures")
