"""``blursim replay DIR``: run a saved law counterexample again (blursim.testing).

A counterexample folder (written by ``err.save(DIR)`` or with
``BLURSIM_COUNTEREXAMPLES`` set while the tests ran; docs/testing.md) holds the
network, the genome, the training batches and the law. Replaying trains the
same network from the same synapses on the same batches and checks the law
after every step: if it breaks again, the command prints the same message as
the failing test and exits with status 1; if it now holds (the bug is fixed),
it says so and exits with 0. A folder that is not a counterexample is an
error (status 2).

A folder is data from anywhere (a colleague, a CI artefact): nothing it names is
imported or called. The law is looked up among blursim's own laws by name; every
file is checked (:meth:`~blursim.testing.counterexample.Counterexample.load`) and
the replay's memory and work are bounded
(:func:`~blursim.testing.counterexample.check_replay`) before anything is simulated.
"""

from __future__ import annotations

import sys
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("replay", help="replay a saved law counterexample (exit 1 if the law still breaks)")
    p.add_argument("dir", metavar="DIR", help="counterexample folder (law.json, network.json, genome.json, data.npz)")
    p.set_defaults(func=cmd_replay)


def builtin_law(name: str, module: str | None, source: str):
    """Blursim's own law ``name`` (registered by :mod:`blursim.testing.laws`); anything else is a
    one-line error listing them. ``module`` is only quoted, never imported."""
    from blursim.errors import SpecError
    from blursim.testing import laws

    own = laws.builtin_laws()  # the command imports nothing a file names: no law of other code is here
    if name in own:
        return own[name]
    where = f" (module {module!r} is never imported)" if module and module != laws.__name__ else ""
    raise SpecError(f"unknown law {name!r}{where}", source=source, path="$.law", choices=sorted(own),
                    hint="Replay a law of your own in Python (docs/testing.md).")


def cmd_replay(args) -> int:
    import numpy as np

    from blursim.errors import BlursimError, SpecError, printable, shorten
    from blursim.testing.counterexample import Counterexample, check_replay
    from blursim.testing.laws import LawNotApplicable
    from blursim.testing.report import LawViolation

    cx = Counterexample.load(args.dir)
    source = str(Path(args.dir) / "law.json")
    law = builtin_law(cx.law, cx.module, source)
    program = check_replay(cx, args.dir)  # before anything is simulated
    shown = shorten(args.dir, 200)
    with np.errstate(all="ignore"):
        try:
            run = law(program, cx.genome, cx.batches, seed=cx.seed, replicas=cx.replicas, state=cx.state,
                      atol=cx.atol, rtol=cx.rtol, check_domain=cx.check_domain, save=False, **cx.options)
        except LawViolation as e:
            print(printable(e.core))
            print(f"  (replayed from {shown}: law {cx.law!r} still breaks)")
            return 1
        except BlursimError:
            raise
        except LawNotApplicable as e:
            raise SpecError(str(e), source=source, path="$.check_domain") from None
        except (ValueError, TypeError, KeyError, IndexError) as e:  # the law's options come from the file
            raise SpecError(f"law {cx.law!r} cannot run on this counterexample ({type(e).__name__}: {e})",
                            source=source, path="$.options",
                            hint="The folder was changed after err.save(DIR) wrote it.") from None
    print(f"law {cx.law!r} holds on the counterexample in {shown} ({run.t} training steps): "
          "the failure does not reproduce")
    if cx.message:
        print("it was saved after this failure:\n" + printable(cx.message))
    sys.stdout.flush()
    return 0
