"""Independent plain-NumPy reference implementations used by the test suite.

Nothing in this package may import from ``blursim``: these modules are the
yardsticks the simulator is checked against.
"""
