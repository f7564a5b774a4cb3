"""helpers: the real code behind the course notebooks.

Modules map to lessons:

- ``startup``      : one call at the top of every notebook (seeds, threads, style, noise, device)
- ``noise``        : precise filters for known third-party warnings and log lines
- ``data``         : checksum-verified loaders for the files in ``data/``
- ``plots``        : the course plot style and small plotting helpers
- ``checks``       : answer checking for "check yourself" exercises
- ``gd``           : gradient descent, SGD, mini-batch GD, momentum, Adam, schedules (01-02)
- ``gd_plots``     : figures and widgets for lessons 01-02 (pure settings -> runs -> figure)
- ``models``       : the course's small GPT-style transformer and its training task (03-05, 08)
- ``memory``       : exact memory accounting: saved activations, parameters, grads, optimiser state
- ``precision``    : number formats, loss scaling, AMP training steps (03)
- ``checkpointing``: gradient checkpointing from scratch and via torch (04)
- ``pipeline``     : pipeline parallelism: split, schedules, simulator, executors, launchers (05)
- ``training``     : resumable training of the course transformer (08)
- ``capstone``     : lesson 08 glue: the five combinations, their ledgers, tolerances, decision guide
- ``timeseries``   : forecasting helpers around statsmodels, pykalman, sktime, Prophet, GluonTS (06-07)

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
