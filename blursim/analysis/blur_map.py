"""One full-batch BLUR step as an update map ``Δw(w)`` (paper Sec. 3.5, App. A; DESIGN §5).

For a fixed batch ``(x, y)`` one training step of a genome (forward pass,
feedback, backward pass, Hebbian update: DESIGN §2) is a deterministic
function of the synapses.  :class:`BlurUpdateMap` exposes it as an
:class:`~blursim.analysis.maps.UpdateMap` on a chosen set of synapses (the
*variables*); every other synapse is held at the base state.

Batched evaluation
------------------
``batch(W)`` with ``W`` of shape ``(m, n)`` writes the ``m`` weight vectors
into the species axis of ONE simulation (``S = m`` copies of the genome,
``R = 1``), runs one :meth:`~blursim.sim.Simulator.train_step` on the full
batch and returns ``Δw = w_after − w_before`` on the variables.  Species are
independent in the simulator, so row ``i`` of the result depends on row ``i``
of ``W`` only.  Large ``m`` is split into chunks that fit ``max_batch_bytes``.

Exact derivatives
-----------------
Complex input runs the simulator in ``complex128``: every primitive of the
step (matrix products, ``tanh``, ``exp``, the batch normalisation's
``sqrt(var + eps)``, the Oja and saturation terms, softmax) is analytic, so
:func:`~blursim.analysis.jacobian.jacobian_complex` gets the Jacobian exact to
rounding (complex step, no subtractive cancellation).  Piecewise activations
(``relu``, ``relu_tanh``, ``relu_derivative``, ``leaky_relu``, ``hard_tanh``)
branch on the real part: the complex step then differentiates the active
piece (a one-sided derivative exactly at a kink), and ``Δw`` is only
piecewise smooth — compare with finite differences (``analyze`` does).

Variables
---------
Flattened per *block*, blocks in projection order:

* forward block ``"<proj>"``: the forward synapses in DESIGN's layout
  ``(n_pre + bias, n_post, kw)`` row-major — presynaptic rows, the bias row
  last — with entries outside the connectivity mask left out;
* backward block ``"V:<proj>"`` (untied networks only): ``V`` in the layout
  ``(n_post, n_pre, kw)``, masked entries left out.

``kw = 1`` with shared channels (one variable per synapse, used by every
state channel), else ``k``.  With tied synapses there are no ``V`` variables
(``V = Wᵀ`` always).  Selections: ``"forward"`` (all forward blocks, the
paper's Fig. 2), ``"forward_backward"`` (all blocks), or block names
(``"in->hidden"``, ``"V:in->hidden"``, a list, or a comma-separated string).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from blursim.genome import GenomeBatch, stack_genomes
from blursim.graph import as_program
from blursim.sim import Simulator, SynapseState, train_batch
from blursim.spec import load_genome

from ._common import EPS, AnalysisError, MemoryBudgetError, check_memory, format_bytes
from .maps import UpdateMap

#: Activations that branch (piecewise analytic): complex step differentiates the active piece.
PIECEWISE_ACTIVATIONS = frozenset({"relu", "relu_derivative", "relu_tanh", "leaky_relu", "hard_tanh"})

#: Default memory for one chunk of species in a batched evaluation.
DEFAULT_MAX_BATCH_BYTES: int = 256 << 20

SELECTIONS = ("forward", "forward_backward")


@dataclass(frozen=True)
class SynapseRef:
    """Where one variable lives: projection ``q``'s ``W`` / bias ``b`` / ``V`` entry.

    ``pre``/``post`` index the presynaptic/postsynaptic neuron of the forward
    direction (``pre`` is ``None`` for a bias); ``c`` is the state channel
    (``None`` with shared channels).
    """

    kind: str  # "W", "b" or "V"
    proj: str
    q: int
    pre: int | None
    post: int
    c: int | None

    @property
    def label(self) -> str:
        ch = "" if self.c is None else f",c={self.c}"
        if self.kind == "W":
            return f"{self.proj}[pre={self.pre},post={self.post}{ch}]"
        if self.kind == "b":
            return f"{self.proj}[bias,post={self.post}{ch}]"
        return f"V:{self.proj}[post={self.post},pre={self.pre}{ch}]"


@dataclass
class _Block:
    name: str
    kind: str  # "fwd" or "bwd"
    q: int
    sel: np.ndarray  # flat indices into the block's DESIGN-layout array
    shape: tuple[int, int, int]
    start: int = 0
    stop: int = 0

    @property
    def size(self) -> int:
        return int(self.sel.size)


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "__cuda_array_interface__"):
        return x.get()
    return np.asarray(x)


def _check_batch(program, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    if x.ndim != 2 or x.shape[0] < 1:
        raise AnalysisError(f"x must be a (B, n_features) array with B >= 1, got shape {x.shape}.")
    if x.shape[1] != program.n_features:
        raise AnalysisError(
            f"x has {x.shape[1]} features but the network's input populations hold "
            f"{program.n_features} neurons."
        )
    if y.shape != (x.shape[0],) or y.dtype.kind not in "iu":
        raise AnalysisError(f"y must be {x.shape[0]} integer labels, got shape {y.shape} dtype {y.dtype}.")
    if not np.all(np.isfinite(x)):
        raise AnalysisError("x contains non-finite values.")
    for o in program.outputs:
        size = program.pops[o].size
        n_cls = 2 if size == 1 else size
        if y.size and (y.min() < 0 or y.max() >= n_cls):
            raise AnalysisError(
                f"labels must lie in 0..{n_cls - 1} for output population "
                f"{program.pops[o].name!r} ({size} neuron(s)), got {int(y.min())}..{int(y.max())}."
            )
    return x, y.astype(np.int64)


def parse_state(state: Any) -> tuple[str, int]:
    """``"random"`` -> ``("random", 0)``; ``"trained:N"`` -> ``("trained", N)``."""
    if isinstance(state, str):
        s = state.strip()
        if s == "random":
            return "random", 0
        if s.startswith("trained:"):
            try:
                n = int(s.split(":", 1)[1])
            except ValueError:
                n = -1
            if n >= 0:
                return "trained", n
    raise AnalysisError(f"state must be 'random' or 'trained:N' with N >= 0 steps, got {state!r}.")


def base_state(
    spec_or_program: Any,
    genome: Any,
    state: Any = "random",
    *,
    dataset: Any = None,
    batch_size: int = 32,
    seed: int = 0,
    backend: Any = None,
):
    """A base point for the analysis: ``SynapseState`` with ``S = R = 1`` in float64.

    ``"random"``: fresh synapses of replica 0 from ``seed`` (the simulator's
    seeded init, scaled by the genome's ``init_scale``).  ``"trained:N"``: the
    same, then ``N`` training steps with the genome on the training batches of
    ``dataset`` (``blursim.sim.run.train_batch(x_train, y_train, t, seed,
    batch_size)``, exactly as ``blursim run``).  A ``SynapseState`` is
    returned unchanged.
    """
    if isinstance(state, SynapseState):
        return state
    kind, n_steps = parse_state(state)
    program = as_program(spec_or_program)
    sim = Simulator(program, backend=backend, dtype="float64")
    genes = sim.prepare([load_genome(genome)])
    st = sim.init_synapses(genes, replicas=1, seed=int(seed))
    if kind == "trained" and n_steps > 0:
        if dataset is None:
            raise AnalysisError(f"state {state!r} needs a dataset to train on (dataset=...).")
        if int(batch_size) < 1:
            raise AnalysisError(f"batch_size must be >= 1, got {batch_size}.")
        for t in range(n_steps):
            xb, yb = train_batch(dataset.x_train, dataset.y_train, t, int(seed), int(batch_size))
            sim.train_step(st, genes, xb, yb)
            if not bool(sim.is_finite(st).all()):
                raise AnalysisError(
                    f"the genome's synapses became non-finite after {t + 1} of {n_steps} training "
                    "steps; analyse an earlier state (e.g. --state trained:0 or random)."
                )
    st.meta = dict(st.meta, analysis_state=f"{kind}:{n_steps}" if kind == "trained" else "random",
                   seed=int(seed))
    return st


class BlurUpdateMap(UpdateMap):
    """One full-batch BLUR step ``Δw(w)`` on a chosen set of synapses (see module doc).

    Parameters
    ----------
    spec_or_program:
        Network spec (path, dict, ``NetworkSpec``) or compiled ``Program``.
    genome:
        Genome document (``GenomeSpec``, dict or path).
    x, y:
        The full batch: ``(B, n_features)`` inputs and ``(B,)`` integer labels.
    variables:
        ``"forward"``, ``"forward_backward"``, or block name(s): a projection
        name selects its forward synapses and bias, ``"V:<proj>"`` its
        backward synapses.
    state:
        Base point (a ``SynapseState``; species ``species`` and replica
        ``replica`` are used); ``None`` draws fresh synapses from ``seed``.
        Synapses that are not variables are held at their base values.
    backend:
        Array backend name or object (``numpy`` default, ``cupy`` on a GPU);
        real inputs run in float64, complex inputs in complex128.
    max_batch_bytes:
        Memory for one chunk of simulated species.
    """

    supports_complex = True

    def __init__(
        self,
        spec_or_program: Any,
        genome: Any,
        x: Any,
        y: Any,
        *,
        variables: str | Sequence[str] = "forward",
        state: Any = None,
        species: int = 0,
        replica: int = 0,
        seed: int = 0,
        backend: Any = None,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    ) -> None:
        self.program = as_program(spec_or_program)
        self.genome = load_genome(genome)
        prog = self.program
        self.k = prog.k
        self.kw = prog.kw
        self.tied = bool(prog.rules.tied)
        self.x, self.y = _check_batch(prog, x, y)
        self._genome_batch: GenomeBatch = stack_genomes(self.genome, k=prog.k, groups=prog.groups)
        self._backend_arg = backend
        self._sims: dict[str, Any] = {}
        self._genes: dict[tuple[str, int], Any] = {}
        self.max_batch_bytes = int(max_batch_bytes)

        if state is None:
            state = base_state(prog, self.genome, "random", seed=seed, backend=backend)
        self.state_meta = dict(getattr(state, "meta", {}) or {})
        S, R = (int(d) for d in state.get(0, "W").shape[:2])
        if not (0 <= species < S and 0 <= replica < R):
            raise AnalysisError(
                f"species {species} / replica {replica} out of range for a state with S={S}, R={R}."
            )
        self._base_fwd: list[np.ndarray] = []
        self._base_bwd: list[np.ndarray | None] = []
        for qi in range(len(prog.projs)):
            self._base_fwd.append(self._fwd_design(state, qi, species, replica))
            self._base_bwd.append(self._bwd_design(state, qi, species, replica))
        self._base_a = None
        if not prog.rules.reset_neurons and getattr(state, "a", None) is not None:
            self._base_a = [None if a is None else _to_numpy(a)[species : species + 1, replica : replica + 1]
                            for a in state.a]

        self.all_blocks = self._make_blocks()
        self.selection = self._select(variables)
        pos = 0
        for b in self.selection:
            b.start, b.stop = pos, pos + b.size
            pos += b.size
        self.n = pos
        if self.n == 0:
            raise AnalysisError("the selected variables contain no synapses.")
        self.blocks = [(b.name, b.start, b.stop) for b in self.selection]
        self.refs: list[SynapseRef] = [r for b in self.selection for r in self._refs(b)]
        self.labels = [r.label for r in self.refs]
        self.w0 = self.state_to_vector(None)
        self.n_evaluations = 0
        self.n_calls = 0

    @property
    def holds_neuron_states(self) -> bool:
        """Whether the map holds the base state's neuron states fixed (``reset_neurons`` off)."""
        return self._base_a is not None

    # ------------------------------------------------------------ layouts
    def _fwd_design(self, state, qi: int, s: int, r: int) -> np.ndarray:
        """Projection ``qi``'s forward synapses ``(n_pre + bias, n_post, kw)`` of species s, replica r."""
        q = self.program.projs[qi]
        W = _to_numpy(state.get(qi, "W"))
        if W.shape[2:] != (self.kw, q.n_pre, q.n_post):
            raise AnalysisError(
                f"state does not match the network: projection {q.name!r} has W of shape "
                f"{W.shape[2:]}, expected {(self.kw, q.n_pre, q.n_post)}."
            )
        F = np.transpose(W[s, r], (1, 2, 0))
        if q.bias:
            b = _to_numpy(state.get(qi, "b"))[s, r]  # (kw, n_post)
            F = np.concatenate([F, b.T[None]], axis=0)
        return np.array(F, dtype=np.float64 if not np.iscomplexobj(F) else F.dtype)

    def _bwd_design(self, state, qi: int, s: int, r: int) -> np.ndarray | None:
        if self.tied:
            return None
        V = state.get(qi, "V")
        if V is None:
            return None
        return np.array(np.transpose(_to_numpy(V)[s, r], (1, 2, 0)))

    def _make_blocks(self) -> list[_Block]:
        blocks = []
        for qi, q in enumerate(self.program.projs):
            rows = q.n_pre + (1 if q.bias else 0)
            keep = np.ones((rows, q.n_post, self.kw), dtype=bool)
            if q.mask is not None:
                keep[: q.n_pre] = np.asarray(q.mask, dtype=bool)[:, :, None]
            blocks.append(_Block(q.name, "fwd", qi, np.flatnonzero(keep.ravel()), keep.shape))
        if not self.tied:
            for qi, q in enumerate(self.program.projs):
                keep = np.ones((q.n_post, q.n_pre, self.kw), dtype=bool)
                if q.mask is not None:
                    keep[:] = np.asarray(q.mask, dtype=bool).T[:, :, None]
                blocks.append(_Block("V:" + q.name, "bwd", qi, np.flatnonzero(keep.ravel()), keep.shape))
        return blocks

    def _select(self, variables: Any) -> list[_Block]:
        fwd = [b for b in self.all_blocks if b.kind == "fwd"]
        names = {b.name: b for b in self.all_blocks}
        if isinstance(variables, str) and variables in SELECTIONS:
            chosen = fwd if variables == "forward" else fwd + [b for b in self.all_blocks if b.kind == "bwd"]
        else:
            if isinstance(variables, str):
                wanted = [v.strip() for v in variables.split(",") if v.strip()]
            else:
                wanted = [str(v) for v in variables]
            if not wanted:
                raise AnalysisError("variables selects nothing; " + self._valid_names_text())
            chosen = []
            for v in wanted:
                if v not in names:
                    extra = ""
                    if v.startswith("V:") and self.tied:
                        extra = " The network's synapses are tied (V = Wᵀ), so it has no V variables."
                    raise AnalysisError(f"unknown variables {v!r}.{extra} " + self._valid_names_text())
                if names[v] not in chosen:
                    chosen.append(names[v])
            chosen.sort(key=lambda b: self.all_blocks.index(b))
        return [copy.copy(b) for b in chosen]

    def _valid_names_text(self) -> str:
        parts = [f"{b.name} ({b.size} synapses)" for b in self.all_blocks]
        return (
            "Valid choices: forward, forward_backward, or one or more projections (comma-separated): "
            + ", ".join(parts) + "."
        )

    def block_sizes(self) -> dict[str, int]:
        """Number of variables each block (projection) would contribute."""
        return {b.name: b.size for b in self.all_blocks}

    def _refs(self, b: _Block) -> list[SynapseRef]:
        q = self.program.projs[b.q]
        shared = self.kw == 1
        out = []
        for flat in b.sel:
            i, j, c = np.unravel_index(int(flat), b.shape)
            c = None if shared else int(c)
            if b.kind == "fwd":
                if i == q.n_pre:
                    out.append(SynapseRef("b", q.name, b.q, None, int(j), c))
                else:
                    out.append(SynapseRef("W", q.name, b.q, int(i), int(j), c))
            else:  # V layout (n_post, n_pre, kw)
                out.append(SynapseRef("V", q.name, b.q, int(j), int(i), c))
        return out

    # ------------------------------------------------------------ points <-> states
    def state_to_vector(self, state: Any = None, *, species: int = 0, replica: int = 0) -> np.ndarray:
        """The variables' values in ``state`` (default: the base state)."""
        parts = []
        for b in self.selection:
            if state is None:
                arr = self._base_fwd[b.q] if b.kind == "fwd" else self._base_bwd[b.q]
            elif b.kind == "fwd":
                arr = self._fwd_design(state, b.q, species, replica)
            else:
                arr = self._bwd_design(state, b.q, species, replica)
            parts.append(np.asarray(arr).ravel()[b.sel])
        return np.concatenate(parts).astype(np.float64)

    def vector_to_state(self, w: Any, dtype: str = "float64"):
        """A ``SynapseState`` (``S = R = 1``) holding the base synapses with the variables set to ``w``."""
        w = np.asarray(w)
        if w.shape != (self.n,):
            raise AnalysisError(f"w must have shape ({self.n},), got {w.shape}.")
        sim = self._sim(dtype)
        st, _ = self._build(sim, w[None, :])
        return st

    # ------------------------------------------------------------ simulation
    def _sim(self, dtype: str):
        if dtype not in self._sims:
            self._sims[dtype] = Simulator(self.program, backend=self._backend_arg, dtype=dtype)
        return self._sims[dtype]

    def _genes_for(self, sim, dtype: str, m: int):
        key = (dtype, m)
        if key not in self._genes:
            gb = self._genome_batch
            rep = GenomeBatch(gb.k, {g: {f: np.repeat(a, m, axis=0) for f, a in fs.items()}
                                     for g, fs in gb.arrays.items()})
            if len(self._genes) > 8:
                self._genes.clear()
            self._genes[key] = sim.prepare(rep)
        return self._genes[key]

    def per_species_bytes(self, itemsize: int = 16) -> int:
        """Rough memory of one simulated species (synapses, states and temporaries)."""
        syn = 0
        for q in self.program.projs:
            rows = q.n_pre + (1 if q.bias else 0)
            syn += rows * q.n_post * self.kw * (1 if self.tied else 2)
        neurons = sum(p.size for p in self.program.pops) * self.k * self.x.shape[0]
        hebb = max((q.n_pre + 1) * q.n_post * self.k for q in self.program.projs)
        return int(itemsize * (4 * syn + 8 * neurons + 3 * hebb))

    def chunk_size(self, itemsize: int = 16) -> int:
        return max(1, self.max_batch_bytes // max(1, self.per_species_bytes(itemsize)))

    def _build(self, sim, Wc: np.ndarray):
        """A state of ``m = len(Wc)`` species holding the base synapses with the variables from ``Wc``."""
        dtype = sim.backend.dtype_name
        m = Wc.shape[0]
        genes = self._genes_for(sim, dtype, m)
        st = sim.init_synapses(genes, replicas=1, seed=0)  # shapes only; every array is replaced below
        cdt = np.complex128 if dtype == "complex128" else np.float64
        fwd = {b.q: b for b in self.selection if b.kind == "fwd"}
        bwd = {b.q: b for b in self.selection if b.kind == "bwd"}
        for qi, q in enumerate(self.program.projs):
            F = np.empty((m, *self._base_fwd[qi].shape), dtype=cdt)  # C order: reshape below is a view
            F[:] = self._base_fwd[qi]
            if qi in fwd:
                b = fwd[qi]
                F.reshape(m, -1)[:, b.sel] = Wc[:, b.start : b.stop]
            st.set(qi, "W", sim.backend.asarray(np.ascontiguousarray(np.transpose(F[:, : q.n_pre], (0, 3, 1, 2))[:, None])))
            if q.bias:
                st.set(qi, "b", sim.backend.asarray(np.ascontiguousarray(np.transpose(F[:, q.n_pre], (0, 2, 1))[:, None])))
            if self._base_bwd[qi] is not None:
                G = np.empty((m, *self._base_bwd[qi].shape), dtype=cdt)
                G[:] = self._base_bwd[qi]
                if qi in bwd:
                    b = bwd[qi]
                    G.reshape(m, -1)[:, b.sel] = Wc[:, b.start : b.stop]
                st.set(qi, "V", sim.backend.asarray(np.ascontiguousarray(np.transpose(G, (0, 3, 1, 2))[:, None])))
        if self._base_a is not None:
            st.a = [None if a is None else sim.backend.asarray(np.repeat(a, m, axis=0).astype(cdt))
                    for a in self._base_a]
        return st, genes

    def _read(self, sim, st, m: int) -> np.ndarray:
        parts = []
        for b in self.selection:
            q = self.program.projs[b.q]
            if b.kind == "fwd":
                W = sim.backend.to_numpy(st.get(b.q, "W"))[:, 0]  # (m, kw, n_pre, n_post)
                F = np.transpose(W, (0, 2, 3, 1))
                if q.bias:
                    bb = sim.backend.to_numpy(st.get(b.q, "b"))[:, 0]  # (m, kw, n_post)
                    F = np.concatenate([F, np.transpose(bb, (0, 2, 1))[:, None]], axis=1)
            else:
                V = sim.backend.to_numpy(st.get(b.q, "V"))[:, 0]  # (m, kw, n_post, n_pre)
                F = np.transpose(V, (0, 2, 3, 1))
            F = np.broadcast_to(F, (m, *b.shape))
            parts.append(F.reshape(m, -1)[:, b.sel])
        return np.concatenate(parts, axis=1)

    def batch(self, W: np.ndarray) -> np.ndarray:
        """``Δw`` at each row of ``W`` (shape ``(m, n)``): one simulation with ``S = m`` species."""
        W = np.asarray(W)
        if W.ndim != 2 or W.shape[1] != self.n:
            raise AnalysisError(f"expected an (m, {self.n}) array of points, got shape {W.shape}.")
        cplx = np.iscomplexobj(W)
        dtype = "complex128" if cplx else "float64"
        W = W.astype(np.complex128 if cplx else np.float64, copy=False)
        sim = self._sim(dtype)
        m = W.shape[0]
        out = np.empty((m, self.n), dtype=W.dtype)
        chunk = self.chunk_size(16 if cplx else 8)
        for a in range(0, m, chunk):
            Wc = W[a : a + chunk]
            st, genes = self._build(sim, Wc)
            sim.train_step(st, genes, self.x, self.y)
            out[a : a + chunk] = self._read(sim, st, Wc.shape[0]) - Wc
            self.n_calls += 1
        self.n_evaluations += m
        return out

    def __call__(self, w: np.ndarray) -> np.ndarray:
        return self.batch(np.asarray(w)[None, :])[0]

    # ------------------------------------------------------------ facts for reports
    def piecewise_activations(self) -> list[str]:
        """Names of branching activations the step uses (complex step differentiates the active piece)."""
        names = set()
        for p in self.program.pops:
            if p.role != "input":
                names.update(n for n in p.fwd_names + p.bwd_names if n in PIECEWISE_ACTIVATIONS)
        return sorted(names)

    def complex_rounding_floor(self) -> float:
        """Absolute rounding of a complex-step Jacobian's diagonal.

        ``Δw = w_after − w`` subtracts the perturbation ``i·h`` itself, so
        ``Q_jj = Im(w_after_j)/h − 1`` loses the digits of the ``1``: an
        absolute error of a few ``ε`` on the diagonal only (which the
        asymmetry ``Q − Qᵀ`` does not see).
        """
        return 8.0 * EPS

    def describe(self) -> dict[str, Any]:
        """JSON-ready description of the variables."""
        return {
            "n": self.n,
            "selection": [b.name for b in self.selection],
            "blocks": [{"name": b.name, "start": b.start, "stop": b.stop, "size": b.size} for b in self.selection],
            "available_blocks": self.block_sizes(),
            "shared_channels": self.kw == 1,
            "tied": self.tied,
            "k": self.k,
        }

    def smallest_block(self) -> str:
        """The smallest selected block (or the smallest of all when one block is selected)."""
        cands = self.selection if len(self.selection) > 1 else self.all_blocks
        return min(cands, key=lambda b: b.size).name

    def memory_error_hint(self) -> str:
        sizes = sorted(self.block_sizes().items(), key=lambda kv: kv[1])
        smallest = self.smallest_block()
        return (
            f"Restrict the variables to one projection, e.g. variables={smallest!r} "
            f"(CLI: --variables '{smallest}'); other synapses are then held fixed and the Jacobian is the "
            "principal sub-block Q[S, S] (symmetry stays a necessary condition). Variables per "
            "projection: " + ", ".join(f"{k} {v}" for k, v in sizes) + "."
        )

    def check_memory(self, methods: Sequence[str], budget: int | None) -> int:
        """Raise :class:`MemoryBudgetError` (with a BLUR-specific hint) if the Jacobian(s) would not fit."""
        n = self.n
        b = 8 * n * n
        parts: dict[str, float] = {}
        if "complex" in methods:
            parts["complex-step Jacobian: n complex points in and out, Q and its error"] = 6 * b
        if "fd" in methods:
            parts["finite-difference Jacobian: 2n points in and out, ladder arrays"] = 10 * b
        try:
            return check_memory("The Jacobian of the BLUR update map", n, parts, budget)
        except MemoryBudgetError as e:
            raise self.restate_memory_error(e, parts) from None

    def restate_memory_error(self, e: MemoryBudgetError, parts: dict[str, float] | None = None) -> MemoryBudgetError:
        """The same numbers as ``e``, with the hint for BLUR variables instead of the generic one."""
        detail = ""
        if parts:
            detail = " (" + "; ".join(f"{k}: {format_bytes(v)}" for k, v in parts.items()) + ")"
        return MemoryBudgetError(
            f"The analysis of n={e.n} variables ({', '.join(b.name for b in self.selection)}) would need "
            f"about {format_bytes(e.required_bytes)}{detail}, more than the memory budget of "
            f"{format_bytes(e.budget_bytes)}. " + self.memory_error_hint()
            + " Or raise the budget (memory_budget=, CLI --memory-budget) if the machine has the memory.",
            n=e.n, required_bytes=e.required_bytes, budget_bytes=e.budget_bytes,
        )
