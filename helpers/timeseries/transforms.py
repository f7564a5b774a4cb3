"""Small sktime transformers the lessons' pipelines need."""

from __future__ import annotations

import numpy as np
from sktime.transformations.series.func_transform import FunctionTransformer

from helpers import validate

__all__ = ["kernel_stable"]


def _identity(x):  # noqa: ANN001, ANN202 - any sktime series container
    return x


def kernel_stable(decimals: int = 6) -> FunctionTransformer:
    """Round a series to ``decimals`` places so that tree models see the same numbers on any CPU.

    Detrending fits a least-squares line through BLAS/LAPACK; different BLAS kernels
    (``OPENBLAS_CORETYPE``) sum in different orders and change the last bits. A regression tree
    picks the best split among near-tied candidates, so a 1e-13 change can pick another split and
    move a forecast in its 3rd digit. Rounding far below the data's own precision (airline
    passengers are integers) removes the last-bit noise before the trees see it; the inverse is
    the identity, so forecasts are not rounded.
    """
    validate.integer("decimals", decimals, 0, 12)
    return FunctionTransformer(func=np.round, inverse_func=_identity, kw_args={"decimals": decimals},
                               check_inverse=False)  # rounding is not invertible, by design
