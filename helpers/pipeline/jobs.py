"""The public face of pipeline runs, for notebooks and the command line: make a job, run it on
processes, check it against the unsplit model. Everything here is defined in
:mod:`~helpers.pipeline.job`, :mod:`~helpers.pipeline.reference` and
:mod:`~helpers.pipeline.executors`."""

from __future__ import annotations

from helpers.pipeline.executors import EXECUTORS, run, run_jobs_on_rank
from helpers.pipeline.job import (
    EXECUTOR_NAMES,
    Fault,
    PipelineJob,
    PipelineRun,
    RankResult,
    make_job,
    torch_threads,
    with_,
)
from helpers.pipeline.reference import (
    Equivalence,
    Reference,
    check_equivalence,
    max_differences,
    reference_run,
)

__all__ = [
    "EXECUTORS", "EXECUTOR_NAMES", "Equivalence", "Fault", "PipelineJob", "PipelineRun", "RankResult", "Reference",
    "check_equivalence", "make_job", "max_differences", "reference_run", "run", "run_jobs_on_rank", "torch_threads", "with_",
]
