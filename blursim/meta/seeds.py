"""Seeds of a meta-training run, all derived from the experiment's root ``seed``.

Every stream is a :class:`numpy.random.SeedSequence` keyed by the root seed,
a stream tag and indices -- never the global RNG, never state carried from one
generation to the next (so a resumed run draws exactly what an uninterrupted
one draws):

============================  ==================================  ==========================
stream                         entropy                             shared by
============================  ==================================  ==========================
ES sampling                    ``(seed, ES)``                      the strategy (its state)
fitness, generation ``g``,     ``(seed, TRAIN, g, i)`` -> one      every species of generation
training task ``i``            32-bit task seed                    ``g`` (common random numbers)
validation task ``i``          ``(seed, VALID, i)`` -> one         every generation and genome
                               32-bit task seed
gradient: run ``r``, 0-based   ``(seed, GRAD, r, g, m, i)`` -> one  the meta-gradient of run ``r``
step ``g``, draw ``m``,        32-bit task seed                    in step ``g``
training task ``i``
============================  ==================================  ==========================

A task seed then drives the simulation as in DESIGN §2: synapse init of
replica ``r`` from ``(task_seed, INIT, r)``, training batch ``t`` from
``(task_seed, DATA, t)``, query batch ``q`` from ``(task_seed, QUERY, q)``.
Fitness seeds are fresh in every generation (so a genome cannot overfit one
draw of batches and initialisations) and common within it (so fitness
differences between species come from their genomes); validation seeds are
fixed, so validation curves compare genomes across generations on the same
draws.
"""

from __future__ import annotations

import numpy as np

TAG_ES = 0x65735F73  # "es_s"
TAG_TRAIN = 0x6D74726E  # "mtrn"
TAG_VALID = 0x6D76616C  # "mval"
TAG_GRAD = 0x67726164  # "grad"


def strategy_seed(root: int) -> np.random.SeedSequence:
    """The seed handed to the evolution strategy."""
    return np.random.SeedSequence([int(root), TAG_ES])


def _one(entropy: list[int]) -> int:
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint32)[0])


def train_seeds(root: int, generation: int, n_tasks: int) -> list[int]:
    """Task seeds of the fitness evaluation in 0-based ``generation``, one per training task."""
    return [_one([int(root), TAG_TRAIN, int(generation), i]) for i in range(n_tasks)]


def validation_seeds(root: int, n_tasks: int) -> list[int]:
    """Task seeds of the validation tasks (the same in every generation)."""
    return [_one([int(root), TAG_VALID, i]) for i in range(n_tasks)]


def gradient_seeds(root: int, run: int, step: int, draw: int, n_tasks: int) -> list[int]:
    """Task seeds of draw ``draw`` of the meta-batch of run ``run`` in 0-based gradient step
    ``step``, one per training task (runs differ in their draws, Sec. 4.2)."""
    return [_one([int(root), TAG_GRAD, int(run), int(step), int(draw), i]) for i in range(n_tasks)]
