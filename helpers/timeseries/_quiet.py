"""Precise fixes for third-party noise that the list-based filters in :mod:`helpers.noise` cannot reach.

Four known problems, each fixed at its cause and nowhere else:

0. **statsmodels prepends blanket rules at import.** ``statsmodels.tools.sm_exceptions`` runs
   ``warnings.simplefilter("always", ModelWarning)`` (and ConvergenceWarning, ...) when first
   imported - after ``helpers.setup()`` - which puts them in front of the course's precise
   filters (e.g. the "No frequency information" ValueWarning filter). We import that module and
   then re-apply :func:`helpers.noise.quiet_third_party`, so the precise filters come first again.

1. **sktime resets warning filters.** ``sktime.utils.warnings._SuppressWarningPattern`` (used by
   ``_fh.py`` and ``utils/datetime.py`` on every forecasting-horizon check) *exits* with
   ``warnings.filterwarnings("default", category=FutureWarning)``. That inserts a catch-all
   FutureWarning rule at the *front* of ``warnings.filters``, so every earlier "ignore" rule
   for a FutureWarning is overridden, and the filter change also clears the once-per-location
   registry. Result: sktime 1.2's ``remember_data`` FutureWarning reappears on every
   constructed forecaster although ``helpers.noise`` filters it. We make the context manager
   restore the caller's filter list on exit (what ``warnings.catch_warnings`` does), so the
   ordinary filters in ``helpers.noise.WARNING_FILTERS`` work again.
2. **cmdstanpy configures its logger lazily.** Its ``get_logger()`` runs at the first Stan
   call and, if the ``cmdstanpy`` logger has no handler, sets it to DEBUG and attaches an INFO
   stream handler, undoing any level set before. Giving the logger a ``NullHandler`` up front
   makes cmdstanpy leave it alone; WARNING and above still propagate to the root logger.
3. **prophet logs an ERROR at import** ("Importing plotly failed", plotly is optional and not
   used here) and ``prophet.forecaster`` sets its logger to INFO at import. The plot logger is
   raised to CRITICAL and the ``prophet`` logger gets a filter that drops INFO records only.
"""

from __future__ import annotations

import logging
import warnings

from helpers import noise

_PATCH_FLAG = "_helpers_restores_filters"


class _DropBelowWarning(logging.Filter):
    """Drop records below WARNING (a level set later by the library cannot undo a filter)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


def _patch_sktime_filter_reset() -> bool:
    """Make sktime's pattern-suppressing context manager restore the filters it changed."""
    try:
        from sktime.utils import warnings as skw  # heavy: sktime loads on first use (lessons 06-07)
    except ImportError:  # sktime not installed: nothing to fix
        return False
    cls = getattr(skw, "_SuppressWarningPattern", None)
    if cls is None or getattr(cls, _PATCH_FLAG, False):
        return cls is not None

    def __enter__(self) -> None:  # noqa: ANN001
        self._helpers_catcher = warnings.catch_warnings()
        self._helpers_catcher.__enter__()
        warnings.filterwarnings("ignore", category=self.warning_type, message=self.message_pattern)

    def __exit__(self, exc_type, exc_val, exc_tb) -> None:  # noqa: ANN001
        self._helpers_catcher.__exit__(exc_type, exc_val, exc_tb)

    cls.__enter__ = __enter__
    cls.__exit__ = __exit__
    setattr(cls, _PATCH_FLAG, True)
    return True


def _quiet_cmdstanpy_and_prophet() -> None:
    stan = logging.getLogger("cmdstanpy")
    if not any(isinstance(h, logging.NullHandler) for h in stan.handlers):
        stan.addHandler(logging.NullHandler())
    stan.setLevel(logging.WARNING)
    logging.getLogger("prophet.plot").setLevel(logging.CRITICAL)
    prophet = logging.getLogger("prophet")
    if not any(isinstance(f, _DropBelowWarning) for f in prophet.filters):
        prophet.addFilter(_DropBelowWarning())


def _reapply_after_statsmodels() -> None:
    try:
        import statsmodels.tools.sm_exceptions  # noqa: F401 - its import installs "always" rules
    except ImportError:
        return
    noise.quiet_third_party()


def quiet_forecasting_libraries() -> None:
    """Apply the four fixes above (idempotent). Called when :mod:`helpers.timeseries` is imported."""
    _reapply_after_statsmodels()
    _quiet_cmdstanpy_and_prophet()
    _patch_sktime_filter_reset()
