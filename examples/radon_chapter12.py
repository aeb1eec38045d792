"""Gelman & Hill (2007), chapter 12: radon in Minnesota homes, counties as groups.

    python examples/radon_chapter12.py [FIGURE_DIR]      (default: examples/figures/)

1. complete and no pooling, then the varying-intercept model y_i = α_j[i] + β x_i + ε_i;
2. the county-level uranium predictor: α_j = a0 + b0 u_j + η_j (figure 12.6);
3. varying slopes too: β_j = a1 + b1 u_j + η_j2;
with the pooling figure (12.4), shrinkage, the random effects, and Gelman & Pardoe's R² and
pooling factor λ for each model.
"""

import sys
import time
from pathlib import Path

import multilevel
from multilevel import datasets

# the eight counties of Gelman & Hill's figure 12.4
COUNTIES = ["LAC QUI PARLE", "AITKIN", "KOOCHICHING", "DOUGLAS", "CLAY", "STEARNS", "RAMSEY",
            "ST LOUIS"]  # fmt: skip


def main(outdir: Path) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    radon = datasets.load("radon")
    start = time.perf_counter()

    def save(fig, name):
        fig.savefig(outdir / name, dpi=110)
        print(f"  wrote {outdir / name}")

    print("== 1. Varying intercept: log_radon ~ floor, intercept varying by county ==\n")
    m1 = multilevel.fit("log_radon ~ floor", radon, group="county", varying="1", data_name="radon")
    print(m1.summary(max_groups=5))
    cmp = m1.compare_pooling()
    cols = ["n"] + [f"(Intercept): {k}" for k in ("complete", "no pooling", "partial")]
    print("\nComplete, no and partial pooling of the intercepts (G&H figure 12.4 counties):")
    print(cmp.loc[COUNTIES, cols].round(3).to_string())
    print("\nR² and pooling factor λ (Gelman & Pardoe 2006):")
    print(m1.pooling(ndraws=1000, seed=1).round(3).to_string(index=False))
    save(m1.plot_pooling(groups=COUNTIES), "fig12_4_pooling.png")
    save(m1.plot_shrinkage(), "shrinkage_varying_intercept.png")

    print("\n== 2. The county-level uranium predictor: α_j = a0 + b0 log_uranium_j + η_j ==\n")
    m2 = multilevel.fit("log_radon ~ floor", radon, group="county",
                        group_formula="~ log_uranium", varying="1", data_name="radon")  # fmt: skip
    print(m2.summary(max_groups=5))
    print("\nR² and pooling factor λ:")
    print(m2.pooling(ndraws=1000, seed=1).round(3).to_string(index=False))
    save(m2.plot_group_regression(), "fig12_6_uranium.png")
    save(m2.plot_pooling(groups=COUNTIES), "pooling_uranium.png")

    print("\n== 3. Varying intercepts and slopes, both predicted by uranium ==\n")
    m3 = multilevel.fit("log_radon ~ floor", radon, group="county",
                        group_formula="~ log_uranium", data_name="radon")  # fmt: skip
    print(m3.summary(max_groups=5))
    print("\nR² and pooling factor λ:")
    print(m3.pooling(ndraws=1000, seed=1).round(3).to_string(index=False))
    save(m3.plot_group_regression("floor"), "slopes_uranium.png")
    save(m3.plot_caterpillar(), "caterpillar.png")
    save(m3.plot_overview(groups=COUNTIES[::2]), "overview.png")
    print(f"\n(ran in {time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "figures")
