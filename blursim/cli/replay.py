"""``blursim replay DIR``: run a saved law counterexample again (blursim.testing).

A counterexample folder (written by ``err.save(DIR)`` or with
``BLURSIM_COUNTEREXAMPLES`` set while the tests ran; docs/testing.md) holds the
network, the genome, the training batches and the law. Replaying trains the
same network from the same synapses on the same batches and checks the law
after every step: if it breaks again, the command prints the same message as
the failing test and exits with status 1; if it now holds (the bug is fixed),
it says so and exits with 0. A folder that is not a counterexample is an
error (status 2).
"""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    p = sub.add_parser("replay", help="replay a saved law counterexample (exit 1 if the law still breaks)")
    p.add_argument("dir", metavar="DIR", help="counterexample folder (law.json, network.json, genome.json, data.npz)")
    p.set_defaults(func=cmd_replay)


def cmd_replay(args) -> int:
    import numpy as np

    from blursim.testing.counterexample import Counterexample
    from blursim.testing.laws import replay
    from blursim.testing.report import LawViolation

    cx = Counterexample.load(args.dir)
    with np.errstate(all="ignore"):
        try:
            run = replay(cx)
        except LawViolation as e:
            print(e.core)
            print(f"  (replayed from {args.dir}: law {cx.law!r} still breaks)")
            return 1
    print(f"law {cx.law!r} holds on the counterexample in {args.dir} ({run.t} training steps): "
          "the failure does not reproduce")
    if cx.message:
        print("it was saved after this failure:\n" + cx.message)
    sys.stdout.flush()
    return 0
