"""GluonTS (PyTorch) on a laptop CPU: a quiet training sandbox and an sktime adapter.

* :func:`lightning_sandbox` - torch threads set to 1 for the duration (small models train faster
  single-threaded and results are reproducible), Lightning's checkpoints and logs go to a
  temporary directory that is deleted afterwards (never the repository), and no progress bar,
  model summary or logger.
* :class:`GluonTSForecaster` - wraps a GluonTS estimator (``SimpleFeedForward`` or ``DeepAR``) as
  an sktime forecaster, so it runs through ``evaluate``, splitters and the leaderboard.

``gluonts`` is imported lazily: importing it costs seconds.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
from sktime.forecasting.base import BaseForecaster

from helpers import (
    seeds,
    validate,
)

__all__ = ["GluonTSForecaster", "lightning_sandbox", "seeded"]

MODELS = ("feedforward", "deepar")


@contextmanager
def lightning_sandbox(threads: int = 1) -> Iterator[dict]:
    """Yield Lightning ``trainer_kwargs`` for a quiet CPU run in a temporary directory."""
    import torch  # heavy: torch loads with GluonTS, on first use

    validate.positive_int("threads", threads)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with tempfile.TemporaryDirectory(prefix="lightning-") as root:
            yield {
                "default_root_dir": root,
                "logger": False,
                "enable_progress_bar": False,
                "enable_model_summary": False,
                "accelerator": "cpu",
                "devices": 1,
            }
    finally:
        torch.set_num_threads(previous)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed Python, NumPy and torch for the block, then restore the previous RNG states."""
    import torch  # heavy: torch loads with GluonTS, on first use

    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


#: an integer index (0, 1, 2, ...) is handed to GluonTS as consecutive periods of this frequency
INTEGER_FREQ = "D"


def _freq(index: pd.Index) -> str:
    if isinstance(index, pd.PeriodIndex):
        return index.freqstr
    if isinstance(index, pd.DatetimeIndex) and index.freqstr:
        return index.to_period().freqstr
    if pd.api.types.is_integer_dtype(index) and (len(index) < 2 or (np.diff(index) == 1).all()):
        return INTEGER_FREQ
    raise TypeError("y needs a PeriodIndex, a DatetimeIndex with a frequency or a consecutive integer "
                    f"index, got {type(index).__name__}")


def _start(index: pd.Index) -> pd.Period:
    if isinstance(index, pd.PeriodIndex):
        return index[0]
    if isinstance(index, pd.DatetimeIndex):
        return index.to_period()[0]
    return pd.Period("2000-01-01", freq=INTEGER_FREQ)  # any origin: GluonTS needs one


class GluonTSForecaster(BaseForecaster):
    """sktime forecaster training a GluonTS model on one series (probabilistic forecasts).

    Parameters
    ----------
    model : "feedforward" (SimpleFeedForward, an MLP on the context window) or "deepar" (an RNN).
    context_length : input window; default ``2 * prediction_length``.
    epochs, num_batches_per_epoch, batch_size, lr : training budget.
    hidden : width of the hidden layers.
    log : train on ``log(y)`` and transform forecasts back (quantiles map exactly).
    random_state : seed for sampling windows, weights and forecast samples (None: from COURSE_SEED).

    Examples
    --------
    >>> from helpers.timeseries import GluonTSForecaster, airline
    >>> y = airline()
    >>> forecaster = GluonTSForecaster(epochs=1, num_batches_per_epoch=2).fit(y, fh=[1, 2, 3])
    >>> y_pred = forecaster.predict()
    """

    _tags = {
        "authors": ["course helpers"],
        "y_inner_mtype": "pd.Series",
        "capability:exogenous": False,
        "requires-fh-in-fit": True,
        "capability:insample": False,
        "capability:pred_int": True,
        "capability:pred_int:insample": False,
        "capability:random_state": True,
        "property:randomness": "derandomized",
        "python_dependencies": ["gluonts", "torch"],
    }

    def __init__(
        self,
        model: str = "feedforward",
        context_length: int | None = None,
        epochs: int = 5,
        num_batches_per_epoch: int = 20,
        batch_size: int = 32,
        hidden: int = 32,
        lr: float = 1e-3,
        log: bool = True,
        random_state: int | None = None,
    ) -> None:
        self.model = model
        self.context_length = context_length
        self.epochs = epochs
        self.num_batches_per_epoch = num_batches_per_epoch
        self.batch_size = batch_size
        self.hidden = hidden
        self.lr = lr
        self.log = log
        self.random_state = random_state
        super().__init__()

    def _check_params(self) -> None:
        """sktime's contract: ``__init__`` only stores the parameters; ``_fit`` checks them."""
        if self.model not in MODELS:
            raise ValueError(f"model={self.model!r}: allowed values are {MODELS}")
        for name in ("epochs", "num_batches_per_epoch", "batch_size", "hidden"):
            validate.positive_int(name, getattr(self, name))
        if self.context_length is not None:
            validate.positive_int("context_length", self.context_length)
        validate.positive_finite("lr", self.lr)
        validate.boolean("log", self.log)

    def _estimator(self, prediction_length: int, freq: str, trainer_kwargs: dict):  # noqa: ANN202
        from gluonts.torch import (  # heavy: GluonTS and lightning load on first use
            DeepAREstimator,
            SimpleFeedForwardEstimator,
        )

        context = self.context_length or 2 * prediction_length
        common = dict(
            prediction_length=prediction_length,
            context_length=context,
            batch_size=self.batch_size,
            num_batches_per_epoch=self.num_batches_per_epoch,
            lr=self.lr,
            trainer_kwargs={"max_epochs": self.epochs, **trainer_kwargs},
        )
        if self.model == "feedforward":
            return SimpleFeedForwardEstimator(hidden_dimensions=[self.hidden, self.hidden], **common)
        return DeepAREstimator(freq=freq, hidden_size=self.hidden, num_layers=2, dropout_rate=0.1, **common)

    def _dataset(self, y: pd.Series):  # noqa: ANN202
        from gluonts.dataset.common import ListDataset  # heavy: GluonTS loads on first use

        freq = _freq(y.index)  # raises for an index without a frequency
        x = y.to_numpy(dtype=float)
        if self.log:
            if np.nanmin(x) <= 0:
                raise ValueError("log=True needs a strictly positive series")
            x = np.log(x)
        return ListDataset([{"start": _start(y.index), "target": x}], freq=freq)

    def _fit(self, y, X=None, fh=None):  # noqa: ANN001, ANN202 - sktime signature
        self._check_params()
        steps = np.asarray(fh.to_relative(self.cutoff), dtype=int)
        if steps.min() < 1:
            raise ValueError(f"fh must be strictly in the future; got relative steps {steps.tolist()}")
        self.prediction_length_ = int(steps.max())
        self.train_data_ = self._dataset(y)
        with lightning_sandbox() as trainer_kwargs, seeded(seeds.resolve(self.random_state, 0)):
            estimator = self._estimator(self.prediction_length_, _freq(y.index), trainer_kwargs)
            self.predictor_ = estimator.train(self.train_data_)
            self.forecast_ = next(iter(self.predictor_.predict(self.train_data_)))
        return self

    def _steps(self, fh) -> tuple[np.ndarray, pd.Index]:  # noqa: ANN001
        steps = np.asarray(fh.to_relative(self.cutoff), dtype=int)
        if steps.min() < 1 or steps.max() > self.prediction_length_:
            raise ValueError(
                f"fh steps {steps.tolist()} outside 1..{self.prediction_length_} (the horizon given to fit)"
            )
        return steps - 1, fh.to_absolute(self.cutoff).to_pandas()

    def _quantile(self, q: float) -> np.ndarray:
        values = np.asarray(self.forecast_.quantile(q), dtype=float)
        return np.exp(values) if self.log else values

    def _predict(self, fh, X=None):  # noqa: ANN001, ANN202
        idx, index = self._steps(fh)
        return pd.Series(self._quantile(0.5)[idx], index=index, name=self._y.name)

    def _predict_quantiles(self, fh, X, alpha):  # noqa: ANN001, ANN202
        idx, index = self._steps(fh)
        cols = pd.MultiIndex.from_product([self._get_varnames(), alpha])
        data = np.column_stack([self._quantile(a)[idx] for a in alpha])
        return pd.DataFrame(data, index=index, columns=cols)

    @classmethod
    def get_test_params(cls, parameter_set: str = "default") -> list[dict]:
        return [{"epochs": 1, "num_batches_per_epoch": 2, "hidden": 4, "log": False},
                {"model": "deepar", "epochs": 1, "num_batches_per_epoch": 1, "hidden": 4, "log": False,
                 "random_state": 1}]
