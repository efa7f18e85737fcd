"""Meta-learning BLUR genomes: by gradient through the unroll (paper Sec. 3.3, 4.2) and with
evolution strategies (Sec. 4.4).

- :mod:`~blursim.meta.experiment` -- the experiment document
  (``blursim.experiment/1``), :func:`load_experiment`, and
  :func:`prepare_experiment`, which checks everything before any compute;
- :mod:`~blursim.meta.strategies` -- CMA-ES, sep-CMA-ES, OpenAI-ES behind one
  ask/tell interface with explicit, checkpointable state;
- :mod:`~blursim.meta.evaluate` -- a population as one batched simulation,
  chunked by a memory budget; :mod:`~blursim.meta.distributed` -- the same
  chunks on a Dask cluster (optional extra);
- :mod:`~blursim.meta.trainer` -- the generation loop, :func:`meta_train`, and the
  generation of an evolution strategy; :mod:`~blursim.meta.gradient_step` -- the step of
  the ``gradient`` strategy (its optimizer: :mod:`~blursim.meta.strategies.gradient`, Adam,
  synchronised runs); :mod:`~blursim.meta.records` -- the state and record they pass on;
- :mod:`~blursim.meta.observers` / :mod:`~blursim.meta.io` -- run directory
  (log, genomes, checkpoint, plot; atomic writes), progress bar.

See ``docs/meta.md``.
"""

from blursim.meta.experiment import (
    FORMAT_EXPERIMENT,
    ExperimentSpec,
    Setup,
    load_experiment,
    prepare_experiment,
)
from blursim.meta.gradient_step import MetaGradientError
from blursim.meta.trainer import Generation, MetaResult, MetaTrainer, TrainerState, meta_train

__all__ = [
    "FORMAT_EXPERIMENT",
    "ExperimentSpec",
    "Generation",
    "MetaGradientError",
    "MetaResult",
    "MetaTrainer",
    "Setup",
    "TrainerState",
    "load_experiment",
    "meta_train",
    "prepare_experiment",
]
