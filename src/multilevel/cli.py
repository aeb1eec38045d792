"""Command line: ``multilevel fit DATA FORMULA [--ml] [--json]`` and ``multilevel datasets``."""

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
    from .errors import DataError

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


def _cmd_fit(args) -> int:
    from .api import fit

    df, name = read_data(args.data)
    if args.group or args.group_formula or args.varying or args.plot:
        if args.ci:
            raise DataError("--ci is not available with --group or --plot yet")
        from .twolevel import cli_fit

        return cli_fit(args, df, name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = fit(args.formula, df, reml=not args.ml, data_name=name)
        kw = {"n": args.boot_n, "seed": args.seed} if args.ci == "boot" else {}
        table = m.confint(method=args.ci, level=args.level, **kw) if args.ci else None
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    if args.json:
        out = m.to_dict()
        if table is not None:
            lo, hi = table.columns[:2]
            out["confint"] = {
                "method": args.ci,
                "level": args.level,
                "intervals": [
                    {"param": str(k), "lower": float(r[lo]), "upper": float(r[hi])}
                    for k, r in table.iterrows()
                ],
            }
        print(json.dumps(_finite(out), indent=1, allow_nan=False))
    else:
        print(m.summary())
        if table is not None:
            print(f"\nConfidence intervals ({args.ci}, {100 * args.level:g}%):")
            print(table.to_string(float_format=lambda v: f"{v:.6g}", na_rep="NA"))
    return 0


def _cmd_compare(args) -> int:
    from .compare import cli_compare

    return cli_compare(args)


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
        choices=["gaussian"],
        help="response distribution (only gaussian so far)",
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
    from .twolevel import add_cli_arguments

    add_cli_arguments(f)
    f.set_defaults(func=_cmd_fit)
    c = sub.add_parser(
        "compare", help="likelihood-ratio test of two nested models (refitted by ML)"
    )
    c.add_argument("data", help="CSV or Parquet file, or a bundled dataset name")
    c.add_argument("formula0", help="the smaller (null) model")
    c.add_argument("formula1", help="the larger model")
    c.add_argument("--json", action="store_true", help="print the comparison as JSON")
    c.set_defaults(func=_cmd_compare)
    d = sub.add_parser("datasets", help="list the bundled datasets")
    d.set_defaults(func=_cmd_datasets)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
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
