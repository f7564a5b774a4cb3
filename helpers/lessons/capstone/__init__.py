"""Lesson 08 capstone: one training run with every technique of the course, and the guide to them.

The run is the course transformer (:mod:`helpers.core`) trained on the char task with AdamW, a
warm-up + cosine learning-rate schedule (:class:`helpers.core.LRSchedule`) and gradient clipping, in
five **combinations** (:data:`COMBINATIONS`):

=============  =====================================================================
``plain``      one process, fp32 (the reference: :class:`helpers.training.Trainer`)
``amp``        one process, bf16 autocast (lesson 03)
``checkpoint`` one process, every block checkpointed (lesson 04)
``pipeline``   2 stages on 2 processes, 1F1B, fp32 (lesson 05)
``all``        2 stages on 2 processes, bf16 autocast and checkpointing inside each stage
=============  =====================================================================

Every combination starts from the same weights and sees the same batches as the reference
(:func:`initial_state`, :func:`batches`), so their loss curves can be compared step by step
(:func:`loss_agreement`). :func:`stage_ledgers` accounts the memory each process holds
(parameters, gradients, optimiser state, and the measured live peak of the step's other tensors:
lesson 04's tracker, on the ranks themselves for the pipeline), deterministically;
:func:`recommend` turns those numbers into the decision guide, which also weighs gradient
accumulation (``accumulate``).
"""

from __future__ import annotations

from helpers.lessons.capstone.guide import (
    PREFERENCE_FAST_LOW_PRECISION,
    PREFERENCE_SLOW_LOW_PRECISION,
    ZERO_NOTE,
    Recommendation,
    recommend,
)
from helpers.lessons.capstone.learning import (
    cuda_step_peaks,
    real_word_share,
    sample,
)
from helpers.lessons.capstone.ledgers import (
    all_ledgers,
    peak_bytes,
    saved_activation_peaks,
    stage_bounds,
    stage_ledgers,
)
from helpers.lessons.capstone.runs import (
    COMBINATIONS,
    GUIDE_COMBINATIONS,
    Combination,
    CurveRun,
    PipelineResults,
    RankPeaks,
    RunSpec,
    batches,
    combination,
    initial_state,
    pipeline_job,
    probe_pipeline_memory,
    run_combinations,
    train_pipeline,
    train_single,
    training_threads,
)
from helpers.lessons.capstone.stats import (
    Agreement,
    batch_noise,
    loss_agreement,
)
from helpers.lessons.capstone.tables import (
    LEDGER_KINDS,
    ledger_rows,
    plot_curves,
    plot_ledgers,
    plot_speed,
    speed_rows,
)
from helpers.lessons.progress import clear_cell_output, progress_bar

__all__ = [
    "Agreement",
    "COMBINATIONS",
    "GUIDE_COMBINATIONS",
    "RankPeaks",
    "ZERO_NOTE",
    "probe_pipeline_memory",
    "saved_activation_peaks",
    "Combination",
    "CurveRun",
    "LEDGER_KINDS",
    "PREFERENCE_FAST_LOW_PRECISION",
    "PREFERENCE_SLOW_LOW_PRECISION",
    "PipelineResults",
    "Recommendation",
    "RunSpec",
    "all_ledgers",
    "batch_noise",
    "batches",
    "clear_cell_output",
    "combination",
    "cuda_step_peaks",
    "initial_state",
    "ledger_rows",
    "loss_agreement",
    "peak_bytes",
    "pipeline_job",
    "plot_curves",
    "plot_ledgers",
    "plot_speed",
    "progress_bar",
    "real_word_share",
    "recommend",
    "run_combinations",
    "sample",
    "speed_rows",
    "stage_bounds",
    "stage_ledgers",
    "train_pipeline",
    "train_single",
    "training_threads",
]
