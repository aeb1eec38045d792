"""Shared fixtures: lme4 reference figures (tests/data/reference), bundled datasets and the
test-only datasets of tests/data/datasets (e.g. sleepstudy with prior weights)."""

import json
from pathlib import Path

import pandas as pd
import pytest

from multilevel import datasets

REFERENCE = Path(__file__).parent / "data" / "reference"
DATASETS = Path(__file__).parent / "data" / "datasets"


def reference(name: str) -> dict:
    return json.loads((REFERENCE / f"{name}.json").read_text())


def load_data(name: str) -> pd.DataFrame:
    """A reference's data: a bundled dataset, or a CSV of tests/data/datasets."""
    local = DATASETS / f"{name}.csv"
    return pd.read_csv(local) if local.is_file() else datasets.load(name)


def reference_weights(ref: dict) -> str | None:
    """The weights column of a reference model (lme4's JSON has ``{}`` when there is none)."""
    w = ref.get("weights")
    return w if isinstance(w, str) and w else None


def gaussian_references() -> list[str]:
    names = []
    for p in sorted(REFERENCE.glob("*.json")):
        ref = json.loads(p.read_text())
        if ref.get("family", "gaussian") == "gaussian":
            names.append(ref["name"])
    return names


def glmm_references() -> list[str]:
    names = []
    for p in sorted(REFERENCE.glob("*.json")):
        ref = json.loads(p.read_text())
        if ref.get("family", "gaussian") != "gaussian":
            names.append(ref["name"])
    return names


def exact_laplace_reference(name: str) -> dict:
    """glmmTMB's figures for a GLMM reference (tests/data/reference/make_glmm_references.R)."""
    return json.loads((REFERENCE / "glmm" / f"{name}_tmb.json").read_text())


@pytest.fixture(scope="session")
def ref():
    return reference
