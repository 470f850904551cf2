"""glibc allocator settings for tensor-heavy loops.

By default glibc serves every allocation above 128 KiB with a fresh mmap and gives it back
with munmap, so each training step maps, page-faults and zeroes its activation buffers anew;
on a 2-core machine that is ~15% of a step of an x-vector (see bench/RESULTS.md). Keeping
large blocks on the heap and never trimming it lets steps reuse the same pages. PyTorch's own
CUDA caching allocator does the same on the GPU.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
_done = False


def keep_freed_memory(trim_threshold: int = 1 << 30) -> bool:
    """Tell glibc malloc to reuse freed large blocks; a no-op off glibc or when MALLOC_* is set."""
    global _done
    if _done or any(key.startswith("MALLOC_") for key in os.environ):
        return _done
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    _done = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, trim_threshold))
    log.debug("glibc malloc tuned for reuse: %s", _done)
    return _done
