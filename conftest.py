"""Test-session setup, loaded by pytest before any test module or doctest is imported.

Triton decides at import whether ``triton.jit`` compiles kernels or runs them in its
interpreter on CPU tensors; the suite runs the ``"triton"`` selective-scan backend in the
interpreter on every machine, so ``TRITON_INTERPRET=1`` is set here, before anything imports
triton (nothing but that backend does). An explicit value in the environment is kept.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
