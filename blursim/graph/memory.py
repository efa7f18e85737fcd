"""How much memory a network needs, estimated from its spec before anything is allocated.

One estimator serves every command: ``blursim validate`` prints it, ``compile_network``
refuses a network whose connectivity masks cannot be built on this machine, ``run``,
``evaluate``, ``analyze`` and ``baseline`` refuse a batch that cannot fit, and
meta-training (:mod:`blursim.meta.evaluate`) cuts a population into chunks that fit its
memory budget and refuses an experiment of which not even one genome fits.

The estimate is deliberately generous (an upper bound, checked against measured peaks in
``tests/test_limits.py``). Per genome and replica (``itemsize`` bytes per number):

- ``synapses``: ``W`` (``kw x (n_pre + bias) x n_post`` per projection; ``kw`` is 1 with
  shared channels, else ``k``) and, when untied, ``V`` of the same size -- stored dense even
  when masked, which bounds the block tiles (a feedback pathway, DESIGN §6, stores its unused
  ``W`` as zeros: it counts like any projection; its bias is always off);
- ``states``: ``k x B x n`` states of every non-input population for a batch of ``B`` rows;
- ``workspaces``: the temporaries of one step -- three times the synapses (update, keep and
  normalisation buffers), four times the Hebbian products (``k x n_pre x n_post`` for ``W``
  and ``V``) and seven times the states (pre-activations, mixes, normalisation, feedback).

Once per network: ``build``, the masks of masked projections and the temporaries of building
them and of their block tilings (bytes per synapse pair, by connectivity kind); ``init``, the
float64 draws of fresh synapses (per replica, shared by every genome).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from blursim.errors import MemoryLimitError
from blursim.limits import format_bytes

#: Bytes per (pre, post) pair while a projection's mask is built and tiled, by kind: the mask
#: kept (1), the builder's temporaries (``local2d``: float64 distance matrices; ``fixed_probability``:
#: a float64 draw), and the block tilings of ``W`` and ``V`` (index and slot arrays).
_BUILD_PER_PAIR = {"all_to_all": 0, "one_to_one": 24, "from_list": 24, "block_random": 28,
                   "fixed_probability": 33, "local2d": 56}
#: Fixed bytes of compiling a network (plans, Python objects), whatever its size.
_BUILD_BASE = 1 << 20


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a network needs (see the module docstring); ``batch`` rows, numbers of ``itemsize``."""

    build: int
    init: int
    synapses: int
    states: int
    workspaces: int
    batch: int
    itemsize: int

    @property
    def per_genome(self) -> int:
        """Bytes of one genome and one replica during a step."""
        return self.synapses + self.states + self.workspaces

    def chunk(self, genomes: int, replicas: int = 1) -> int:
        """Bytes of one chunk of ``genomes`` genomes with ``replicas`` replicas each (plus the
        shared synapse draws)."""
        return self.per_genome * replicas * genomes + self.init * replicas

    def total(self, genomes: int = 1, replicas: int = 1) -> int:
        """Everything: building the network and one chunk of ``genomes``."""
        return self.build + self.chunk(genomes, replicas)

    def describe(self, genomes: int = 1, replicas: int = 1) -> str:
        """One line for ``blursim validate``."""
        g = f"{genomes} genomes" if genomes != 1 else "a genome"
        r = f" x {replicas} replicas" if replicas != 1 else ""
        return (f"memory {format_bytes(self.total(genomes, replicas))} for {g}{r} at batch {self.batch} "
                f"(build {format_bytes(self.build)}; per genome: synapses {format_bytes(self.synapses)}, "
                f"states {format_bytes(self.states)}, workspaces {format_bytes(self.workspaces)})")


def estimate(spec: Any, *, batch: int, itemsize: int = 4) -> MemoryEstimate:
    """The :class:`MemoryEstimate` of a network spec (a :class:`~blursim.spec.NetworkSpec`, or a
    compiled program's ``spec``) for batches of ``batch`` rows. Needs sizes only: it is made
    before masks are built, so it may refuse a network that could not even be compiled."""
    spec = getattr(spec, "spec", spec)  # a Program carries its spec
    k = int(spec.k)
    rules = spec.rules
    kw = 1 if rules.shared_channels else k
    sizes = {p.name: int(p.size) for p in spec.populations}
    syn = heb = pairs_build = 0
    for q in spec.projections:
        n_pre, n_post = sizes.get(q.from_, 0), sizes.get(q.to, 0)
        w = kw * (n_pre + (1 if q.bias else 0)) * n_post
        syn += w * (1 if rules.tied else 2)
        heb += k * n_pre * n_post * 2
        pairs_build += _BUILD_PER_PAIR.get(q.connectivity.kind, 56) * n_pre * n_post
    B = max(1, int(batch))
    states = sum(k * B * p.size for p in spec.populations if p.role != "input")
    init = 8 * 3 * syn  # float64 draws, their stack and the scaled copy
    return MemoryEstimate(
        build=_BUILD_BASE + pairs_build,
        init=init,
        synapses=itemsize * syn,
        states=itemsize * states,
        workspaces=itemsize * (3 * syn + 4 * heb + 7 * states),
        batch=B,
        itemsize=itemsize,
    )


def require(need: int, *, what: str, budget: int | None = None, budget_name: str = "the memory budget",
            path: Any = None, hint: str | None = None) -> None:
    """Refuse (:class:`~blursim.errors.MemoryLimitError`, "needs X GiB") when ``need`` bytes exceed
    ``budget`` (when given) or the memory this machine lets blursim use
    (:func:`blursim.machine.memory_bytes`)."""
    from blursim.machine import memory_bound

    if budget is not None and need > budget:
        raise MemoryLimitError(
            f"{what} needs {format_bytes(need)}, more than {budget_name} of {format_bytes(budget)}",
            path=path, hint=hint,
        )
    have, limit = memory_bound()  # RAM, cgroup, ulimit -v, $BLURSIM_MAX_MEMORY: the least
    if need > have:
        raise MemoryLimitError(
            f"{what} needs {format_bytes(need)}, more than the {format_bytes(have)} this process may "
            f"use ({limit})", path=path, hint=hint,
        )
