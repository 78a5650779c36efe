"""Code shared by tests only: fake checkpoints, mock TFDS metadata, fake runs.

Tests import it as `from helpers import ...`: pytest puts `tests/` on
`sys.path` for a test directory without `__init__.py` (the same mechanism as
`from test_patches_core import ...`), whatever directory pytest is run from.
"""
