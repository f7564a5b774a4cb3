"""Pipeline parallelism (lesson 05): split a model into stages, schedule micro-batches, run them.

Modules:

- ``split``     partition the course GPT into contiguous stages, balanced by parameters or time
- ``schedules`` GPipe, 1F1B, interleaved 1F1B, ZB-H1 and ZB-V as per-rank lists of actions
- ``simulate``  a discrete-event simulator (timelines, bubble, peak in flight) and ``check_schedule``
- ``calibrate`` the simulator with a run's measured costs, against its measured time
- ``job``       what a run does and returns, and what executors build from a job
- ``reference`` the unsplit model in one process, and the equivalence check
- ``executors`` the executor registry and ``run(jobs, nprocs)``; ``jobs`` is the public face
- ``runtime``   the course's own executor: real processes, pipeline x data parallel
- ``comm``      its messages: process groups, ``batch_isend_irecv``, shapes and dtypes (gloo and NCCL)
- ``backward``  the backward split into B (input gradient) and W (weight gradient)
- ``resume``    per-rank checkpoint shards and a manifest: save and resume a pipelined run
- ``torch_pp``  the same split run by ``torch.distributed.pipelining`` (incl. ZBV and DualPipeV)
- ``launch``    start ranks from a notebook (spawn) or run under ``torchrun``
- ``draw``      timeline pictures;  ``widgets``  the schedule explorer widget
- ``measure``   timing experiments (speed-up against one process)

``python -m helpers.pipeline --help`` (or ``torchrun ... -m helpers.pipeline``) is the shell entry.
"""

from __future__ import annotations

from helpers.pipeline.schedules import (
    SCHEDULES,
    Action,
    PipelineSchedule,
    ScheduleError,
    bubble_formula,
    make_schedule,
)
from helpers.pipeline.simulate import Timeline, check_schedule, simulate

__all__ = [
    "SCHEDULES", "Action", "PipelineSchedule", "ScheduleError", "Timeline", "bubble_formula",
    "make_schedule", "check_schedule", "simulate",
]
