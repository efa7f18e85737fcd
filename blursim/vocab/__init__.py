"""The vocabulary a network spec names: activation functions and feedback kinds.

Registries of plain array functions (``xp`` is the backend's array module),
below both the compiler (:mod:`blursim.graph`, which checks that a spec's
names exist and stores the names) and the simulator (:mod:`blursim.sim`,
which resolves them to these functions). Nothing here knows about networks.
"""

from blursim.vocab.activations import ACTIVATIONS
from blursim.vocab.feedback import FEEDBACK

__all__ = ["ACTIVATIONS", "FEEDBACK"]
