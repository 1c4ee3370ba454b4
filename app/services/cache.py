"""A small per-process LRU cache of byte strings with a total size bound.

Used for WADO-RS metadata documents (META-05, keyed by the entity tag) and rendered images
(REND-09, keyed by the instance's SHA-256 and the normalised parameters): keys derive from
content hashes, so an entry can never be stale, only unused. Caches are the one
kind of process-local state a replica may keep (DESIGN.md §2).
"""

from collections import OrderedDict
from collections.abc import Hashable


class ByteCache:
    """Least-recently-used ``key -> bytes`` with at most ``max_bytes`` of values.

    >>> cache = ByteCache(10)
    >>> cache.put("a", b"12345"); cache.put("b", b"123456")
    >>> cache.get("a") is None, cache.get("b")
    (True, b'123456')
    """

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._size = 0
        self._items: OrderedDict[Hashable, bytes] = OrderedDict()

    def get(self, key: Hashable) -> bytes | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: Hashable, value: bytes) -> None:
        if len(value) > self._max:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self._size -= len(old)
        self._items[key] = value
        self._size += len(value)
        while self._size > self._max:
            _, evicted = self._items.popitem(last=False)
            self._size -= len(evicted)
