"""
Hand the memory that a job freed back to the system, so that a long-running server stays at
its size after a job instead of at its largest job's.

glibc keeps freed memory in the malloc arena of the thread that freed it, for that thread's
next allocations; the web server runs jobs in several worker threads, each with its arena. With
the R50 model the app's server grew from 1.05 GiB after start to 1.7-1.95 GiB after a few
512 x 512 requests, and a 24-megapixel upload then peaked at 3.0 GiB instead of 2.55 GiB
(BENCHMARKS.md).
``malloc_trim(0)`` returns the free pages of every arena. Other C libraries (musl, macOS) have
no such call; there it does nothing.
"""
import ctypes
import ctypes.util
import functools


def _find_malloc_trim():
    """glibc's ``int malloc_trim(size_t pad)``, or None where the C library has none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        malloc_trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    malloc_trim.argtypes = [ctypes.c_size_t]
    malloc_trim.restype = ctypes.c_int
    return malloc_trim


_MALLOC_TRIM = _find_malloc_trim()


def return_freed_memory():
    """Return the free pages of every malloc arena to the system; True if any were returned."""
    return bool(_MALLOC_TRIM(0)) if _MALLOC_TRIM is not None else False


def returning_freed_memory(job):
    """``job`` (a function), followed by :func:`return_freed_memory` once its locals are gone."""

    @functools.wraps(job)
    def run(*args, **kwargs):
        try:
            return job(*args, **kwargs)
        finally:
            return_freed_memory()

    return run
