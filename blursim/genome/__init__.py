"""Genomes at run time: presets, batches with a species axis, flat vectors.

- :data:`PRESETS` -- ``backprop`` (eq. 4, DESIGN §3) and ``random`` (seeded).
- :class:`GenomeBatch` -- S genomes stacked along a leading species axis, the
  form in which genomes enter a compiled simulation.
- :class:`GenomeLayout` -- which fields of which groups are a flat real
  vector, for evolution strategies and analysis.
"""

from blursim.genome.arrays import GenomeBatch, GenomeLayout, stack_genomes
from blursim.genome.presets import PRESETS, backprop_genome, make_preset, random_genome

__all__ = [
    "PRESETS",
    "GenomeBatch",
    "GenomeLayout",
    "backprop_genome",
    "make_preset",
    "random_genome",
    "stack_genomes",
]
