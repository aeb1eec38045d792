"""Command line: ``multilevel fit``, ``multilevel compare`` and ``multilevel datasets``.

Errors are one line on stderr with exit status 2 (never a traceback); a closed pipe
(``multilevel fit ... | head``) ends the program quietly.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings

from .errors import DataError, MultilevelError


def _csv_separator(path: str) -> str:
    """',' unless the header line has no comma but a semicolon or a tab (or a .tsv name)."""
    import gzip

    lower = path.lower()
    if lower.endswith((".tsv", ".tab", ".tsv.gz")):
        return "\t"
    opener = gzip.open if lower.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as f:
            header = f.readline()
    except (OSError, EOFError):
        return ","  # pandas reports the problem
    if "," not in header:
        for sep in (";", "\t"):
            if sep in header:
                return sep
    return ","


def read_data(path: str):
    """A CSV or Parquet file, or the name of a bundled dataset. Raises
    :class:`~multilevel.errors.DataError` saying what is wrong with the file."""
    import pandas as pd

    from . import datasets

    if not os.path.exists(path):
        if path.lower() in datasets.names():
            return datasets.load(path), path.lower()
        raise DataError(
            f"'{path}' is neither a file nor a bundled dataset "
            f"(bundled: {', '.join(datasets.names())})"
        )
    if os.path.isdir(path):
        raise DataError(f"'{path}' is a directory, not a data file")
    lower = path.lower()
    try:
        if lower.endswith((".parquet", ".pq")):
            df = pd.read_parquet(path)
        else:
            sep = _csv_separator(path)
            df = pd.read_csv(path, sep=sep, skipinitialspace=True)
            header = pd.read_csv(path, sep=sep, header=None, nrows=1, skipinitialspace=True)
            names = [str(v).strip() for v in header.iloc[0]]
            dup = sorted({c for c in names if names.count(c) > 1})
            if dup:
                raise DataError(
                    f"the column '{dup[0]}' appears {names.count(dup[0])} times in the header "
                    f"of '{path}'; rename the copies"
                )
            df.columns = [str(c).strip() for c in df.columns]
    except pd.errors.EmptyDataError:
        raise DataError(f"'{path}' is empty") from None
    except pd.errors.ParserError as e:
        raise DataError(f"cannot read '{path}' as CSV: {_one_line(e)}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"cannot read '{path}': it is not UTF-8 text ({e.reason})") from None
    except ImportError as e:
        raise DataError(f"cannot read '{path}': {_one_line(e)}") from None
    except (OSError, EOFError, ValueError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"cannot read '{path}': {_one_line(e)}") from None
    if df.shape[1] == 0:
        raise DataError(f"'{path}' has no columns")
    if df.shape[0] == 0:
        raise DataError(f"'{path}' has a header but no rows")
    return df, os.path.basename(path)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__


def _finite(obj):
    """JSON has no NaN or infinity: write them as null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _print_warnings(caught, skip=()) -> None:
    for w in caught:
        if skip and issubclass(w.category, skip):
            continue
        print(f"warning: {w.message}", file=sys.stderr)


def _confint_json(table, method: str, level: float) -> dict:
    lo, hi = [c for c in table.columns if c.endswith("%")][:2]
    rows = []
    for k, r in table.iterrows():
        row = {"param": str(k), "lower": float(r[lo]), "upper": float(r[hi])}
        if "parameter" in table.columns:
            row["lme4"] = str(r["parameter"])
        rows.append(row)
    return {"method": method, "level": level, "intervals": rows}


def _cmd_fit(args) -> int:
    from .api import fit
    from .present.format import confint_text

    if args.group is None and (args.group_formula or args.varying):
        raise DataError("--group-formula and --varying need --group (the grouping column)")
    df, name = read_data(args.data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fam = args.family if args.link is None else _family(args.family, args.link)
        m = fit(
            args.formula,
            df,
            reml=not args.ml,
            family=fam,
            nagq=args.nagq,
            weights=args.weights,
            offset=args.offset,
            data_name=name,
            group=args.group,
            group_formula=args.group_formula,
            varying=args.varying,
        )
        kw = {"n": args.boot_n, "seed": args.seed} if args.ci == "boot" else {}
        table = m.confint(method=args.ci, level=args.level, **kw) if args.ci else None
    _print_warnings(caught)
    if args.json:
        out = m.to_dict()
        if table is not None:
            out["confint"] = _confint_json(table, args.ci, args.level)
        print(json.dumps(_finite(out), indent=1, allow_nan=False))
    else:
        print(m.summary())
        if table is not None:
            n = args.boot_n if args.ci == "boot" else None
            print("\n" + confint_text(table, args.ci, args.level, n))
    if args.plot:
        fig = m.plot_overview() if args.group is not None else m.plot_caterpillar()
        try:
            fig.savefig(args.plot, dpi=120)
        except (OSError, ValueError) as e:
            raise DataError(f"cannot write the figure to '{args.plot}': {e}") from None
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def _family(name: str, link: str):
    from .engine.family import family

    return family(name, link)


def _jsonable(v):
    import numpy as np
    import pandas as pd

    if v is None or v is pd.NA:
        return None
    if isinstance(v, float | np.floating):
        return None if np.isnan(v) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def _cmd_compare(args) -> int:
    """Fit both formulas (REML unless ``--ml``), compare them with
    :func:`multilevel.anova`, print the table (or JSON) on stdout and the notes on stderr."""
    from .api import anova, fit
    from .inference.compare import COLUMNS, BoundaryWarning, RefitNotice, format_anova

    df, name = read_data(args.data)
    reml = not args.ml
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fam = args.family if args.link is None else _family(args.family, args.link)
        kw = dict(reml=reml, weights=args.weights, offset=args.offset, data_name=name,
                  family=fam, nagq=args.nagq)  # fmt: skip
        m0 = fit(args.formula0, df, **kw)
        m1 = fit(args.formula1, df, **kw)
        table = anova(m0, m1, names=["m0", "m1"])
    _print_warnings(caught, skip=(RefitNotice, BoundaryWarning))  # reported with the table
    if args.json:
        out = {
            "data": name,
            "refitted_with_ml": bool(table.attrs["refitted"]),
            "models": [
                {
                    "name": nm,
                    "formula": table.attrs["formulas"][nm],
                    **{c: _jsonable(table.loc[nm, c]) for c in COLUMNS[:5]},
                }
                for nm in table.index
            ],
            "test": {
                "chisq": _jsonable(table["Chisq"].iloc[-1]),
                "df": _jsonable(table["Df"].iloc[-1]),
                "p": _jsonable(table["Pr(>Chisq)"].iloc[-1]),
            },
            "notes": list(table.attrs["messages"]),
        }
        print(json.dumps(out, indent=1))
    else:
        print(format_anova(table))
    return 0


def _cmd_datasets(args) -> int:
    from . import datasets

    for n in datasets.names():
        print(f"{n:12} {datasets.DESCRIPTIONS[n]}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="multilevel", description="Multilevel (mixed-effects) regression."
    )
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fit", help="fit a linear mixed model and print its summary")
    f.add_argument("data", help="CSV or Parquet file, or a bundled dataset name")
    f.add_argument("formula", help="lme4 formula, e.g. 'y ~ x + (1 + x | g)'")
    f.add_argument("--ml", action="store_true", help="maximum likelihood instead of REML")
    f.add_argument("--json", action="store_true", help="print the fit as JSON")
    f.add_argument(
        "--family",
        default="gaussian",
        choices=["gaussian", "binomial", "poisson"],
        help="response distribution: gaussian (a linear mixed model, the default), binomial "
        "or poisson (a generalized linear mixed model, by maximum likelihood)",
    )
    f.add_argument("--link", help="link function (binomial: logit, probit, cloglog; poisson: log)")
    f.add_argument(
        "--nagq",
        type=int,
        default=1,
        help="quadrature nodes per dimension (binomial, poisson): 1 is the Laplace "
        "approximation; more needs a single random-effects term such as (1 | g) or (1 + x | g)",
    )
    f.add_argument(
        "--weights",
        metavar="COL",
        help="column of prior weights: Var(e_i) = sigma^2 / w_i, as lme4's weights=",
    )
    f.add_argument(
        "--offset",
        metavar="COL",
        help="column added to the linear predictor with coefficient 1 (or offset(expr) "
        "in the formula)",
    )
    f.add_argument(
        "--ci",
        choices=["wald", "profile", "boot"],
        help="also print confidence intervals for every parameter",
    )
    f.add_argument("--level", type=float, default=0.95, help="confidence level (--ci)")
    f.add_argument(
        "--boot-n", dest="boot_n", type=int, default=1000, help="bootstrap replicates (--ci boot)"
    )
    f.add_argument("--seed", type=int, default=None, help="random seed (--ci boot)")
    f.add_argument(
        "--group",
        help="grouping column: FORMULA is then the individual-level formula ('y ~ x')",
    )
    f.add_argument(
        "--group-formula",
        dest="group_formula",
        help="group-level predictors, e.g. '~ u + sector' (with --group)",
    )
    f.add_argument(
        "--varying",
        help="individual-level coefficients that vary by group, e.g. '1' or '1 + x' "
        "(with --group; default: all)",
    )
    f.add_argument(
        "--plot",
        metavar="FILE.png",
        help="write a figure: with --group, pooling lines, the group-level regression, "
        "shrinkage and the random effects; otherwise the random effects",
    )
    f.set_defaults(func=_cmd_fit)
    c = sub.add_parser(
        "compare", help="likelihood-ratio test of two nested models (refitted by ML)"
    )
    c.add_argument("data", help="CSV or Parquet file, or a bundled dataset name")
    c.add_argument("formula0", help="the smaller (null) model")
    c.add_argument("formula1", help="the larger model")
    c.add_argument("--ml", action="store_true", help="fit by maximum likelihood")
    c.add_argument("--weights", metavar="COL", help="column of prior weights (both models)")
    c.add_argument("--offset", metavar="COL", help="offset column (both models)")
    c.add_argument("--json", action="store_true", help="print the comparison as JSON")
    c.add_argument(
        "--family",
        default="gaussian",
        choices=["gaussian", "binomial", "poisson"],
        help="gaussian (default), binomial or poisson (both models)",
    )
    c.add_argument("--link", help="link function of --family (both models)")
    c.add_argument("--nagq", type=int, default=1, help="quadrature nodes (both models)")
    c.set_defaults(func=_cmd_compare)
    d = sub.add_parser("datasets", help="list the bundled datasets")
    d.set_defaults(func=_cmd_datasets)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at exit
        return status
    except BrokenPipeError:
        # the reader (e.g. `head`) has gone: stop quietly; point stdout at /dev/null so
        # that the interpreter's last flush does not complain
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a program killed by the closed pipe
    except MultilevelError as e:
        print(f"error: {e.one_line()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - a bug, not bad input: still no traceback
        if os.environ.get("MULTILEVEL_DEBUG"):
            raise
        print(
            f"error: internal error ({type(e).__name__}: {_one_line(e)}); please report it "
            "(MULTILEVEL_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
