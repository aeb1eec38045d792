"""Shared fixtures: lme4 reference figures (tests/data/reference) and bundled datasets."""

import json
from pathlib import Path

import pytest

REFERENCE = Path(__file__).parent / "data" / "reference"


def reference(name: str) -> dict:
    return json.loads((REFERENCE / f"{name}.json").read_text())


def gaussian_references() -> list[str]:
    names = []
    for p in sorted(REFERENCE.glob("*.json")):
        ref = json.loads(p.read_text())
        if ref.get("family", "gaussian") == "gaussian":
            names.append(ref["name"])
    return names


@pytest.fixture(scope="session")
def ref():
    return reference
