"""Keep freed tensor memory in the process heap during CPU work (glibc malloc only).

With glibc's defaults a freed multi-megabyte tensor goes back to the operating system (munmap or heap trim), so the
next tensor of the same size arrives as fresh pages that the kernel faults in and zeroes one by one. A 256x256
ScaoedNet restore allocates and frees its 4 MiB feature maps hundreds of times and took ~70,000 page faults per call
on the development machine; with freed memory kept in the heap it takes none. ``retained_heap`` keeps it for the
duration of a block and hands it back afterwards; ``retain_heap`` keeps it for the rest of the process (training).
Elsewhere (macOS, Windows, musl) both do nothing.
"""
import contextlib
import ctypes
import ctypes.util
import sys
import threading

import torch

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
# the largest mmap threshold glibc accepts on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX = 4 MiB * sizeof(long))
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
# glibc's dynamic tuning sets the trim threshold to twice the mmap threshold; we restore that relation on exit
TRIM_THRESHOLD_AFTER = 2 * MMAP_THRESHOLD_MAX
TRIM_THRESHOLD_NEVER = 2**31 - 1  # mallopt takes a C int

_lock = threading.Lock()
_depth = 0
_permanent = False


def _glibc():
    """glibc's libc handle, or None where malloc is not glibc's."""
    if not sys.platform.startswith('linux'):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        libc.gnu_get_libc_version  # absent from musl and other C libraries
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _glibc()


def _retain(libc):
    libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)
    libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_NEVER)


def heap_retention_supported():
    """Whether this process's malloc is glibc's, the only one these helpers tune."""
    return _LIBC is not None


@contextlib.contextmanager
def retained_heap():
    """Within the block, freed memory below 32 MiB per allocation stays in the heap for reuse; on leaving the
    outermost block the free memory is returned to the system (``malloc_trim``). Nestable and thread-safe."""
    global _depth
    if _LIBC is None:
        yield
        return
    with _lock:
        if _depth == 0:
            _retain(_LIBC)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and not _permanent:
                _LIBC.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_AFTER)
                _LIBC.malloc_trim(0)


def retain_heap():
    """Keep freed memory in the heap for the rest of the process: for training loops, which reuse the same
    tensor sizes every iteration. Returns whether the setting took effect (False where malloc is not glibc's)."""
    global _permanent
    if _LIBC is None:
        return False
    with _lock:
        _permanent = True
        _retain(_LIBC)
    return True


def retain_heap_for_training(train_opt, device):
    """What the training models call: ``retain_heap()`` on CPU unless ``train: retain_heap: false``."""
    if train_opt.get('retain_heap', True) and torch.device(device).type == 'cpu':
        return retain_heap()
    return False
