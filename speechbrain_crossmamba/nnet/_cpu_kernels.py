"""The package's C++ CPU kernels (``speechbrain_crossmamba/csrc``): built on first use, cached.

:func:`cpu_kernels` compiles the sources with ``torch.utils.cpp_extension`` the first time it
is called on a machine (30-60 s on 2 cores; ``g++`` or ``clang++`` with OpenMP is needed) and loads
the cached build afterwards (about 0.01 s). The build is keyed by a hash of the sources, the
flags, the torch version and the CPU's instruction set, so a shared cache never serves a
stale or foreign build. If it cannot be built, it warns once, naming the reason, and returns
None: the ``"auto"`` backends then fall back to ``"torch"``. Setting the environment variable
``SB_CROSSMAMBA_NO_CPU_KERNELS=1`` disables the kernels.

Authors
 * speechbrain-crossmamba contributors
"""

import hashlib
import logging
import os
import platform
import re
import warnings
from pathlib import Path

import torch

CSRC = Path(__file__).resolve().parent.parent / "csrc"
SOURCES = (
    "selective_scan.cpp",
    "causal_conv.cpp",
    "bindings.cpp",
    "fast_math.h",
    "kernels.h",
)
DISABLE_VAR = "SB_CROSSMAMBA_NO_CPU_KERNELS"
logger = logging.getLogger(__name__)
_cache = {}


def cpu_kernels():
    """Returns the compiled kernel module, or None if it cannot be built (warned once).

    Returns
    -------
    module or None
        The extension (``scan_fwd``, ``scan_bwd`` and the causal-conv kernels).

    Example
    -------
    >>> kernels = cpu_kernels()
    >>> kernels is None or hasattr(kernels, "scan_fwd")
    True
    """
    if "module" not in _cache:
        try:
            _cache["module"], _cache["error"] = _build(), None
        except (
            Exception
        ) as err:  # a missing compiler, an unusual platform, a failed build
            reason = _reason(err)
            _cache["module"], _cache["error"] = None, reason
            warnings.warn(
                f"speechbrain-crossmamba: the C++ CPU kernels could not be built ({reason}); "
                "using the pure-PyTorch 'torch' backends instead",
                RuntimeWarning,
                stacklevel=3,
            )
    return _cache["module"]


def cpu_kernels_error():
    """Why the kernels are unavailable (one line), or None if they built (after a first try).

    Returns
    -------
    str or None
        The reason.
    """
    return _cache.get("error")


def _reason(err):
    """One line naming why the build failed: the compiler's first error, if it printed one."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    found = [
        line
        for line in lines[1:]
        if re.search(r"error|not found|no such file", line, re.I)
    ]
    line = found[0] if found else (lines[0] if lines else "")
    line = line if len(line) <= 200 else line[:197] + "..."
    return f"{type(err).__name__}: {line}"


def _flags():
    flags = ["-O3", "-ffast-math", "-fopenmp", "-std=c++17"]
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        flags += ["-march=native", "-mprefer-vector-width=512"]
    elif machine in ("aarch64", "arm64"):
        flags += ["-mcpu=native"]
    return flags


def _cpu_id():
    """The CPU's feature flags (Linux), so a -march=native build is never reused elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def _build():
    if os.environ.get(DISABLE_VAR, "") not in ("", "0"):
        raise RuntimeError(
            f"disabled by {DISABLE_VAR}={os.environ[DISABLE_VAR]}"
        )
    files = [CSRC / name for name in SOURCES]
    sources = [str(f) for f in files if f.suffix == ".cpp"]
    flags = _flags()
    digest = hashlib.sha1()
    for path in files:
        digest.update(path.read_bytes())
    digest.update(" ".join(flags + [torch.__version__, _cpu_id()]).encode())
    name = f"sb_crossmamba_cpu_{digest.hexdigest()[:12]}"
    logger.info(
        "Loading the C++ CPU kernels %s (the first build takes 30-60 s)", name
    )
    # torch's own notices ("No CUDA runtime is found", compiler checks) are not ours to show;
    # a failure still reaches the caller as an exception.
    quiet = logging.getLogger("torch.utils.cpp_extension")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        from torch.utils.cpp_extension import load

        return load(name=name, sources=sources, extra_cflags=flags, extra_include_paths=[str(CSRC)],
                    extra_ldflags=["-fopenmp"], verbose=False)  # fmt: skip
    finally:
        quiet.setLevel(level)
