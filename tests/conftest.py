"""Shared fixtures: every test starts from fixed seeds and a single torch thread."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seeded():
    # unit tests pin the course seed (COURSE_SEED is for notebooks); setup() may write it: restore
    saved = os.environ.pop("COURSE_SEED", None)
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    yield
    os.environ.pop("COURSE_SEED", None)
    if saved is not None:
        os.environ["COURSE_SEED"] = saved
