"""One BLAS thread while the engine computes.

Our blocks are too small to gain from threads, and a multi-threaded OpenBLAS on 2 cores is
slower than one thread when the other core is busy: measured up to 100x for a Cholesky,
and ~600 µs mean for a 2x2 triangular solve that takes 9 µs on one thread. Entering the
limit costs ~10 µs.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import cache


@cache
def _controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextmanager
def one_blas_thread():
    """Run the body with BLAS limited to one thread."""
    with _controller().limit(limits=1, user_api="blas"):
        yield
