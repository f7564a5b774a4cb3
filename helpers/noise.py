"""Precise filters for known third-party noise (warnings and log lines).

Each filter names the warning category *and* the module (or logger) it comes from, so that
anything new or unexpected still reaches the learner. Never filter globally.
"""

from __future__ import annotations

import logging
import warnings

#: (action, message regex, category, module regex) for warnings.filterwarnings.
WARNING_FILTERS: list[tuple[str, str, type[Warning], str]] = [
    # sktime 1.2: every fit announces a future change of the `remember_data` default.
    ("ignore", r".*remember_data.*", FutureWarning, r"sktime\..*"),
    # pykalman 0.9.7 on numpy >= 1.25: array-to-scalar conversion inside loglikelihood().
    ("ignore", r".*Conversion of an array with ndim > 0 to a scalar.*", DeprecationWarning, r"pykalman\..*"),
    # statsmodels: frequency inference on bundled monthly/yearly data.
    ("ignore", r".*No frequency information was provided.*", UserWarning, r"statsmodels\.tsa\..*"),
    ("ignore", r".*An unsupported index was provided.*", UserWarning, r"statsmodels\.tsa\..*"),
    # Lightning (GluonTS trainer) hints that do not apply to a CPU teaching run.
    ("ignore", r".*does not have many workers.*", UserWarning, r"lightning\..*"),
    ("ignore", r".*GPU available but not used.*", UserWarning, r"lightning\..*"),
    ("ignore", r".*Checkpoint directory .* exists and is not empty.*", UserWarning, r"lightning\..*"),
    # GluonTS 0.17 / Lightning 2.6 on torch 2.13 + pandas 2.3 (lesson 07; found by recording every
    # warning of a DeepAR/SimpleFeedForward fit and forecast):
    ("ignore", r"Using `json`-module for json-handling.*", UserWarning, r"gluonts\.json"),
    ("ignore", r"'M' is deprecated and will be removed in a future version, please use 'ME' instead", FutureWarning, r"gluonts\..*"),
    ("ignore", r"Using a non-tuple sequence for multidimensional indexing is deprecated.*", UserWarning, r"gluonts\.torch\.util"),
    # GluonTS gives its modules a validation_step; without validation data Lightning says it skips it.
    ("ignore", r"You defined a `validation_step` but have no `val_dataloader`.*", UserWarning, r"lightning\.pytorch\.trainer\.configuration_validator"),
    ("ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated.*", FutureWarning, r"lightning\.pytorch\.utilities\._pytree"),
    # sktime's ThetaForecaster fits statsmodels' SimpleExpSmoothing; on some backtest folds its
    # optimiser stops at the iteration limit (ConvergenceWarning, a UserWarning subclass).
    ("ignore", r"Optimization failed to converge\. Check mle_retvals", UserWarning, r"statsmodels\.tsa\.holtwinters\.model"),
    # sktime 1.2's ReconcilerForecaster re-aggregates data that already holds the "__total" node
    # (lesson 07); it says so on every fit although the result is what was asked for.
    ("ignore", r"Found elements in the index of X named '__total'.*", UserWarning, r"sktime\.transformations\.hierarchical\.aggregate"),
    # statsmodels' SARIMAX on a short backtest fold (60 months): the Hannan-Rissanen start is
    # non-invertible, so it starts from zeros (lesson 07's leaderboard).
    ("ignore", r"Non-invertible starting seasonal moving average.*", UserWarning, r"statsmodels\.tsa\.statespace\.mlemodel"),
]

#: loggers that print INFO chatter to stderr; raised to WARNING (or ERROR where stated).
QUIET_LOGGERS: dict[str, int] = {
    "cmdstanpy": logging.WARNING,
    "prophet": logging.WARNING,
    "prophet.plot": logging.CRITICAL,  # "Importing plotly failed" (logged at ERROR): plotly is optional, not used here
    "lightning": logging.WARNING,
    "lightning.pytorch": logging.WARNING,
    "lightning.pytorch.utilities.rank_zero": logging.WARNING,
    "lightning.fabric": logging.WARNING,
    "pytorch_lightning": logging.WARNING,
    "gluonts": logging.WARNING,
}


def quiet_third_party() -> None:
    """Install the precise warning filters and quiet the chatty loggers. Idempotent."""
    for action, message, category, module in WARNING_FILTERS:
        warnings.filterwarnings(action, message=message, category=category, module=module)
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
