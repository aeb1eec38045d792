"""Bundled example datasets (lme4's and Gelman & Hill's), loaded as pandas DataFrames.

>>> from multilevel import datasets
>>> datasets.names()[:4]
['cake', 'cbpp', 'dyestuff', 'dyestuff2']
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

DESCRIPTIONS = {
    "cake": "Breakage angle of chocolate cakes: 3 recipes x 6 temperatures, 15 replicates",
    "cbpp": "Contagious bovine pleuropneumonia: new cases out of herd size, 15 herds x 4 periods",
    "dyestuff": "Yield of dyestuff from 6 batches of an intermediate product (lme4)",
    "dyestuff2": "Simulated dyestuff yields with no batch effect (a singular fit)",
    "grouseticks": "Ticks on 403 red grouse chicks in 118 broods at 63 locations, 1995-97",
    "insteval": "University lecture evaluations: 73,421 ratings, students x instructors",
    "owls": "Begging calls of barn owl nestlings in 27 nests, by food treatment and parent's sex",
    "pastes": "Strength of paste: 10 batches, 3 casks each, 2 samples per cask",
    "penicillin": "Penicillin potency: 24 plates crossed with 6 samples",
    "radon": "Radon in 919 Minnesota homes in 85 counties (Gelman & Hill), with log uranium",
    "sleepstudy": "Reaction times over 10 days of sleep deprivation, 18 subjects",
    "verbagg": "Verbal aggression: 316 people x 24 items, yes/no responses (r2, 'N'/'Y')",
}


def names() -> list[str]:
    """Names of the bundled datasets."""
    return sorted(DESCRIPTIONS)


def _path(name: str):
    folder = resources.files(__package__) / "data"
    for fname in (f"{name}.csv", f"{name}.csv.gz"):
        p = folder / fname
        if p.is_file():
            return p
    return None


def load(name: str) -> pd.DataFrame:
    """Load a bundled dataset by name (case-insensitive)."""
    key = name.lower()
    p = _path(key) if key in DESCRIPTIONS else None
    if p is None:
        raise KeyError(f"no bundled dataset '{name}'; available: {', '.join(names())}")
    with resources.as_file(p) as f:
        return pd.read_csv(f)
