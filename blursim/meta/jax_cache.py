"""A persistent cache of JAX's compiled programs, so that gradient meta-training compiles its
unroll once per machine rather than once per process (issue 25 item 3).

JAX writes every program it compiles to the directory of its ``jax_compilation_cache_dir``
option and, in a later process, loads it from there instead of compiling again (the key is
the program, the compile options, the device and the JAX version, so a stale entry is never
used). :func:`enable` turns this on for blursim's meta-objective
(:class:`blursim.meta.objective.MetaObjective`, used by the ``gradient`` strategy):

- directory: ``$BLURSIM_JAX_CACHE`` if set, else ``$XDG_CACHE_HOME/blursim/jax`` (by default
  ``~/.cache/blursim/jax``);
- opt out: ``BLURSIM_JAX_CACHE=off`` (also ``0``, ``false``, ``no`` or empty);
- a cache directory the process already configured (``jax.config`` or ``JAX_COMPILATION_CACHE_DIR``)
  is left as it is;
- every program is cached, however quickly it compiled (JAX's default skips those under one
  second). The directory grows with every new program (another network, unroll length,
  dtype or JAX version; the toy experiment's programs take about 1 MB); delete it to reclaim
  the space: it is only a cache. (JAX can bound its size, ``jax_compilation_cache_max_size``,
  only with the ``filelock`` package, which blursim does not depend on.)
"""

from __future__ import annotations

import os
from pathlib import Path

#: The environment variable that names the cache directory, or turns the cache off.
ENV = "BLURSIM_JAX_CACHE"
#: Values of :data:`ENV` that turn the cache off.
OFF = ("", "0", "off", "false", "no")


def cache_dir() -> Path | None:
    """The directory blursim caches compiled programs in, or ``None`` when turned off."""
    value = os.environ.get(ENV)
    if value is not None:
        return None if value.strip().lower() in OFF else Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "blursim" / "jax"


def enable(jax) -> Path | None:
    """Turn JAX's persistent compilation cache on in this process (see the module docstring);
    returns the directory in use, or ``None`` when the cache is off."""
    given = jax.config.jax_compilation_cache_dir
    if given:
        return Path(given)
    path = cache_dir()
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:  # an unwritable home: compile as before, without a cache
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
