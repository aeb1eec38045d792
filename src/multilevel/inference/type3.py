"""Type III contrasts of the fixed-effects terms, as lmerTest's ``anova(type = 3)`` (SAS
Type III); they need each factor of an interaction that contains a lower-order term to
appear as a main effect too."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import MultilevelError


@dataclass
class _Term:
    name: str
    factors: list[str]  # factor expressions
    cols: list[int]  # columns of the fit's X


@dataclass
class _Factor:
    expr: str
    numeric: bool  # a single numeric column (R's "numeric" data class)
    categorical: bool
    coding: np.ndarray | None = None  # full coding (n, c): indicators or values


def _fixed_terms(fit) -> tuple[list[_Term], bool, dict]:
    """Terms of the fixed part (intercept apart) with their columns in X; whether there is an
    intercept; the encoder kind of each factor."""
    frame = fit.frame
    spec = frame.fixed_spec
    if spec is None:
        raise MultilevelError("the fit has no fixed-effects specification to build tests from")
    index = {name: j for j, name in enumerate(frame.xnames)}
    terms, intercept = [], False
    kinds = {}
    for st in spec.structure:
        cols = ["(Intercept)" if c == "Intercept" else str(c) for c in st.columns]
        factors = [f.expr for f in st.term.factors]
        if str(st.term) == "1" or factors == ["1"]:
            intercept = "(Intercept)" in index
            continue
        keep = [index[c] for c in cols if c in index]
        terms.append(_Term(str(st.term), factors, keep))
    for expr, state in spec.encoder_state.items():
        kinds[expr] = state
    return terms, intercept, kinds


def _is_categorical(state) -> bool:
    kind = state[0] if isinstance(state, tuple) else None
    return getattr(kind, "value", str(kind)) == "categorical"


def _containment(terms: list[_Term], factors: dict[str, _Factor]) -> dict[str, list[str]]:
    """For each term, the terms containing it (SAS; lmerTest's ``containment``): F1 is
    contained in F2 if all variables of F1 are in F2, F2 has more, and both involve the same
    numeric variables."""
    out = {}
    for t1 in terms:
        v1 = set(t1.factors)
        n1 = {f for f in v1 if factors[f].numeric}
        out[t1.name] = [
            t2.name
            for t2 in terms
            if v1 <= set(t2.factors)
            and set(t2.factors) - v1
            and n1 == {f for f in t2.factors if factors[f].numeric}
        ]
    return out


def _level_codes(block: np.ndarray, state) -> np.ndarray:
    """Full indicator coding (n, levels) of a categorical factor from its main-effect columns
    (n, c) of X, levels in formulaic's order when its coding matrix identifies them."""
    uniq, inv = np.unique(np.round(block, 12), axis=0, return_inverse=True)
    inv = np.asarray(inv).reshape(-1)
    order = None
    contrasts = state[1].get("contrasts") if isinstance(state, tuple) and state[1] else None
    if contrasts is not None:
        for reduced in (True, False):
            try:
                cm = np.asarray(contrasts.get_coding_matrix(reduced_rank=reduced), dtype=float)
            except Exception:  # noqa: BLE001 - formulaic contrasts vary
                continue
            if cm.shape[1] != block.shape[1]:
                continue
            pos = []
            for row in uniq:
                hit = np.flatnonzero(np.all(np.abs(cm - row) < 1e-9, axis=1))
                pos.append(int(hit[0]) if len(hit) == 1 else -1)
            if -1 not in pos:
                order = np.argsort(pos, kind="stable")
                break
    if order is None:  # the all-zero row (treatment reference) first, then the others
        zero = np.all(np.abs(uniq) < 1e-12, axis=1)
        order = np.concatenate([np.flatnonzero(zero), np.flatnonzero(~zero)])
    rank = np.empty(len(order), dtype=int)
    rank[order] = np.arange(len(order))
    codes = rank[inv]
    return np.eye(len(uniq))[codes]


def _factor_codings(fit, terms: list[_Term], kinds: dict) -> dict[str, _Factor]:
    """Each factor's full coding, read from its main-effect term in X (None if it has none)."""
    X = np.asarray(fit.frame.X, dtype=float)
    main = {t.factors[0]: t for t in terms if len(t.factors) == 1}
    out = {}
    for t in terms:
        for f in t.factors:
            if f in out:
                continue
            state = kinds.get(f)
            categorical = state is not None and _is_categorical(state)
            coding = None
            if f in main and main[f].cols:
                block = X[:, main[f].cols]
                coding = _level_codes(block, state) if categorical else block
            ncol = coding.shape[1] if coding is not None else None
            numeric = not categorical and ncol in (1, None)
            out[f] = _Factor(f, numeric, categorical, coding)
    return out


def _khatri_rao(mats: list[np.ndarray]) -> tuple[np.ndarray, list[tuple]]:
    """Row-wise products of the columns of each matrix, the first varying fastest (R's
    column order); with the index tuple of each column."""
    out = np.ones((mats[0].shape[0], 1))
    idx: list[tuple] = [()]
    for M in mats:
        out = (M[:, None, :] * out[:, :, None]).reshape(out.shape[0], -1, order="F")
        idx = [ix + (j,) for j in range(M.shape[1]) for ix in idx]
    return out, idx


def _independent(M: np.ndarray, cand: list[int], tol: float = 1e-7) -> list[int]:
    """Greedy: the columns of ``cand`` (in order) that raise the rank (R's ensure_full_rank)."""
    keep: list[int] = []
    Q = np.zeros((M.shape[0], 0))
    for c in cand:
        v = M[:, c]
        nv = np.linalg.norm(v)
        if nv == 0:
            continue
        res = v - Q @ (Q.T @ v)
        res = res - Q @ (Q.T @ res)
        if np.linalg.norm(res) > tol * nv:
            keep.append(c)
            Q = np.column_stack([Q, res / np.linalg.norm(res)])
    return keep


def _doolittle_rows(X: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """t(L) of lmerTest's ``doolittle(X'X)``: unit upper-triangular Type I contrasts (p, p)."""
    x = X.T @ X
    n = x.shape[0]
    L = np.eye(n)
    U = np.zeros((n, n))
    for i in range(n):
        U[i, :] = x[i, :] - L[i, :i] @ U[:i, :]
        for j in range(i + 1, n):
            v = x[j, i] - L[j, :i] @ U[:i, i]
            L[j, i] = 0.0 if abs(U[i, i]) < eps else v / U[i, i]
    L[np.abs(L) < eps] = 0.0
    return L.T


def type3_contrasts(fit) -> dict[str, np.ndarray]:
    """Type III contrast matrix (rows, p) of each fixed-effects term, as lmerTest's
    ``anova(type=3)`` (SAS): with rdX the over-parameterised design (intercept and every term
    in full indicator coding) and X_trt the treatment-coded design, ``L = (X_trt⁺ rdX)'`` has
    the columns of each term residualised on those of the terms containing it (higher order
    first); a term's contrasts are its columns of L on the rows of X_trt's coefficients,
    mapped to the fit's coding by ``X_trt⁺ X``. With one term, Type I (Doolittle) contrasts."""
    terms, intercept, kinds = _fixed_terms(fit)
    X = np.asarray(fit.frame.X, dtype=float)
    p = X.shape[1]
    terms = [t for t in terms if t.cols]
    if not terms:
        return {}
    if len(terms) == 1 or p <= 1:
        Lt = np.ones((1, 1)) if p == 1 else _doolittle_rows(X)
        return {t.name: Lt[t.cols] for t in terms}
    factors = _factor_codings(fit, terms, kinds)
    contains = _containment(terms, factors)
    if not any(contains.values()):
        eye = np.eye(p)
        return {t.name: eye[t.cols] for t in terms}
    missing = sorted({f.expr for f in factors.values() if f.coding is None})
    if missing:
        raise MultilevelError(
            "Type III tests need every variable of an interaction as a main effect too; "
            f"{', '.join(repr(m) for m in missing)} appear(s) only inside interactions"
        )
    # rdX and the treatment-coded columns S (R's coding rule: a factor of a term is coded by
    # contrasts when the term without it is in the model, the empty term being the intercept).
    names = {tuple(sorted(t.factors)) for t in terms}
    blocks, term_of, s_cols = [], [], []
    ncol = 0
    if intercept:
        blocks.append(np.ones((X.shape[0], 1)))
        term_of.append(None)
        s_cols.append(0)
        ncol = 1
    for ti, t in enumerate(terms):
        mats = [factors[f].coding for f in t.factors]
        block, idx = _khatri_rao(mats)
        reduced = []
        for f in t.factors:
            rest = tuple(sorted(g for g in t.factors if g != f))
            margin = rest in names if rest else intercept
            reduced.append(factors[f].categorical and margin)
        for c, ix in enumerate(idx):
            if all(not red or j != 0 for red, j in zip(reduced, ix, strict=True)):
                s_cols.append(ncol + c)
        blocks.append(block)
        term_of.extend([ti] * block.shape[1])
        ncol += block.shape[1]
    rdX = np.column_stack(blocks)
    S = _independent(rdX, s_cols)
    Xt = rdX[:, S]
    if len(S) != p or np.linalg.matrix_rank(np.column_stack([Xt, X])) != p:
        raise MultilevelError(
            "cannot rebuild the treatment-coded design for Type III contrasts of this "
            "fixed-effects structure"
        )
    C = np.linalg.lstsq(Xt, rdX, rcond=None)[0]  # (p, p_rd)
    L = C.T.copy()
    L[np.abs(L) < 1e-10 * max(np.abs(L).max(), 1.0)] = 0.0
    tmap = {t.name: [j for j, s in enumerate(S) if term_of[s] == ti] for ti, t in enumerate(terms)}
    order = sorted(range(len(terms)), key=lambda i: -len(terms[i].factors))
    for i in order:
        t = terms[i]
        if not contains[t.name]:
            continue
        other = [j for name in contains[t.name] for j in tmap[name]]
        cols = tmap[t.name]
        if not other or not cols:
            continue
        B = L[:, other]
        coef = np.linalg.lstsq(B, L[:, cols], rcond=None)[0]
        R = L[:, cols] - B @ coef
        R[np.abs(R) < 1e-10 * max(np.abs(R).max(), 1.0)] = 0.0
        L[:, cols] = R
    Lk = L[S]  # rows of X_trt's coefficients: (p, p)
    A = np.linalg.lstsq(Xt, X, rcond=None)[0]  # X = X_trt A
    out = {}
    for t in terms:
        K = Lk[:, tmap[t.name]].T
        K = K[np.abs(K).sum(axis=1) > 1e-8]
        K = K @ A
        K[np.abs(K) < 1e-10 * np.abs(K).max(initial=0.0)] = 0.0  # lstsq round-off
        out[t.name] = K
    return out
