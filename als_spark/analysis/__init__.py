"""Analysis tools built on the pipeline: hold-out evaluation, tuning, comparing and converging fits.

Nothing in the pipeline's core imports this package (``tests/test_layout.py``).
"""
