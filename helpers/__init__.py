"""helpers: the real code behind the course notebooks, in three layers (imports only go down).

Base (no course imports):

- ``seeds``, ``validate``, ``data``, ``noise``, ``plots``, ``checks``, ``environment``

Core (``helpers.core``): the course transformer and its task, learning-rate schedules, the
checkpointing transformation and the one training step every technique transforms.

Techniques:

- ``gd``           : gradient descent, SGD, mini-batch GD, momentum, Adam, schedules (01-02)
- ``precision``    : number formats, autocast op by op, loss scaling, AMP training (03)
- ``checkpointing``: what gradient checkpointing saves and costs, measured (04)
- ``memory``       : exact memory accounting: saved activations, parameters, grads, optimiser state
- ``pipeline``     : pipeline parallelism: split, schedules, simulator, executors, launchers (05)
- ``training``     : resumable training of the course transformer (08)
- ``timeseries``   : forecasting around statsmodels, pykalman, sktime, Prophet, GluonTS (06-07)

Lessons (``helpers.lessons``): figures and widgets of 01-02, the capstone's runs, ledgers and
guide (08), progress bars; and ``startup``, the one call at the top of every notebook.

Import submodules explicitly (``from helpers import gd``); this package imports nothing heavy.
"""

from __future__ import annotations

import os as _os

# OpenMP threads that spin-wait make torch 10-30x slower when other processes share the cores
# (measured on the 2-core course machine). It must be set before torch is first imported.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

__all__ = ["__version__", "setup"]


def setup(*args: object, **kwargs: object) -> object:  # thin re-export of helpers.startup.setup
    """Start-up call for every notebook; see :func:`helpers.startup.setup`."""
    from helpers.startup import setup as _setup

    return _setup(*args, **kwargs)
