"""Gradient-descent baselines on the same networks and batches as BLUR (Sec. 4.3, Fig. 6 and 9).

A compiled blursim :class:`~blursim.graph.compile.Program` becomes a plain
feed-forward network (:class:`FeedForwardNet`: same topology, sizes, masks and
biases, state-0 activations, softmax cross-entropy, hand-written backprop),
started from the BLUR simulation's initial synapses for the same seed and
trained on the same batch stream by :func:`sgd`, :func:`momentum` (heavy ball
or Nesterov) or :func:`adam`. :func:`train_baseline` gives accuracy versus
training step; :func:`lr_sweep` runs a grid of optimizers and learning rates
(default 1e-4 .. 1).
"""

from blursim.baselines.derivatives import DERIVATIVES, derivative_of
from blursim.baselines.network import FeedForwardNet
from blursim.baselines.optimizers import (
    OPTIMIZERS,
    AdamState,
    Optimizer,
    adam,
    make_optimizer,
    momentum,
    sgd,
)
from blursim.baselines.train import DEFAULT_LRS, BaselineResult, SweepTable, lr_sweep, train_baseline

__all__ = [
    "DEFAULT_LRS",
    "DERIVATIVES",
    "OPTIMIZERS",
    "AdamState",
    "BaselineResult",
    "FeedForwardNet",
    "Optimizer",
    "SweepTable",
    "adam",
    "derivative_of",
    "lr_sweep",
    "make_optimizer",
    "momentum",
    "sgd",
    "train_baseline",
]
