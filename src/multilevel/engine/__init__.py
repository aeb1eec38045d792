"""The engine: cross-product blocks that can be reweighted, the θ layout and its maps, the
kernels per block kind, the profiled deviance and the one factorization that answers every
quantity of a fit. It reads no data table: only the arrays of a
:class:`~multilevel.engine.design.Design` and a :class:`~multilevel.engine.response.Response`."""

from .blocks import BlockPattern, CrossProducts, unexplained_fraction
from .design import Design, RandomBlock
from .deviance import ProfiledDeviance
from .factorization import Factorization
from .layout import ThetaLayout
from .response import Response
from .threads import one_blas_thread

__all__ = [
    "BlockPattern",
    "CrossProducts",
    "Design",
    "Factorization",
    "ProfiledDeviance",
    "RandomBlock",
    "Response",
    "ThetaLayout",
    "one_blas_thread",
    "unexplained_fraction",
]
