"""The BLUR simulator (DESIGN §2): operators, step, unrolls, metrics."""

from blursim.vocab.activations import ACTIVATIONS
from blursim.vocab.feedback import FEEDBACK
from blursim.sim.run import RunResult, query_batches, train_and_evaluate, train_batch
from blursim.sim.engines import ENGINES, make_simulator
from blursim.sim.simulator import Simulator, SynapseState
from blursim.sim.monitor import Monitor, Recording, load_recordings

__all__ = [
    "ACTIVATIONS",
    "ENGINES",
    "FEEDBACK",
    "Monitor",
    "Recording",
    "load_recordings",
    "make_simulator",
    "RunResult",
    "Simulator",
    "SynapseState",
    "query_batches",
    "train_and_evaluate",
    "train_batch",
]
