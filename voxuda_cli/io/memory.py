"""Give pages of a memory-mapped volume back to the OS once a pass over them is done.

Pages of a file mapping that were read or written stay resident (and count in the process's
memory) until the kernel needs them. Streaming a 2 GB tomogram through a map would look like
2 GB of memory; dropping the pages behind the pass keeps the process's footprint to a slab.
Written pages are flushed first, so nothing is lost: a shared mapping's data lives in the file.
"""

from __future__ import annotations

import mmap

import numpy as np

_MADV_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)


def _mapping_of(array: np.ndarray) -> mmap.mmap | None:
    base: object = array
    while base is not None:
        mapping = getattr(base, "_mmap", None)
        if isinstance(mapping, mmap.mmap):
            return mapping
        base = getattr(base, "base", None)
    return None


def release_rows(array: np.ndarray, start: int = 0, stop: int | None = None) -> None:
    """Flush and drop the pages holding rows ``start:stop`` (default: all) of a memory-mapped array.

    The one memory-release helper of voxuda. A no-op for arrays that are not memory maps, or where
    the platform lacks ``madvise``.
    """
    stop = int(array.shape[0]) if stop is None else stop
    mapping = _mapping_of(array)
    if mapping is None or _MADV_DONTNEED is None or stop <= start or mapping.closed:
        return
    try:
        map_address = np.frombuffer(mapping, dtype=np.uint8).ctypes.data
    except (TypeError, ValueError):
        return
    row_bytes = int(np.prod(array.shape[1:])) * array.itemsize
    first = array.ctypes.data - map_address + start * row_bytes
    last = array.ctypes.data - map_address + stop * row_bytes
    page = mmap.PAGESIZE
    first = (first // page) * page  # whole pages only; the rest goes with the next call
    last = min((last // page) * page, len(mapping))
    if last <= first:
        return
    if mapping_is_writable(array):
        mapping.flush(first, last - first)
    mapping.madvise(_MADV_DONTNEED, first, last - first)


def mapping_is_writable(array: np.ndarray) -> bool:
    return bool(array.flags.writeable)
