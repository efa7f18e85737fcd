"""The BLUR simulator (DESIGN §2): operators, step, unrolls, metrics."""

from blursim.vocab.activations import ACTIVATIONS
from blursim.vocab.feedback import FEEDBACK
from blursim.sim.run import RunResult, query_batches, train_and_evaluate, train_batch
from blursim.sim.simulator import Simulator, SynapseState

__all__ = [
    "ACTIVATIONS",
    "FEEDBACK",
    "RunResult",
    "Simulator",
    "SynapseState",
    "query_batches",
    "train_and_evaluate",
    "train_batch",
]
