"""blursim: a simulator for BLUR, Bidirectional Learned Update Rules.

Sandler et al., "Meta-Learning Bidirectional Update Rules", ICML 2021.
The semantic contract (what a spec means, what one step computes) is in
``docs/design.md``.
"""

__version__ = "0.1.0"
