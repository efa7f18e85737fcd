"""The JAX engine's benchmark rows: moved to :mod:`blursim.bench.jax_rows` (this name stays
importable for scripts written before)."""

from blursim.bench.jax_rows import *  # noqa: F401,F403
from blursim.bench.jax_rows import available, device_info, xla_bytes  # noqa: F401
from blursim.bench.report import format_lines  # noqa: F401
