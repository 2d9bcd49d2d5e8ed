"""Import stand-in for numba (bench/axolotl_tool.py puts it on the Axolotl run's path only
when numba is absent). Axolotl decorates its multipack bin-packing with `numba.njit`; real
numba needs llvmlite (a 57 MiB wheel). Here the decorators return the plain function: the
packing runs in Python (0.2 s for 4,000 rows), the training step is unaffected."""

__version__ = "0.0.0+ft-bench-shim"


def njit(*args, **kwargs):
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return args[0]
    return lambda fn: fn


jit = njit
prange = range
