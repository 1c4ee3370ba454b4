"""A small per-process LRU cache of byte strings with a total size bound.

Used for WADO-RS metadata documents (META-05, keyed by the entity tag) and rendered images
(REND-09, keyed by the instance's SHA-256 and the normalised parameters): keys derive from
content hashes, so an entry can never be stale, only unused. Caches are the one
kind of process-local state a replica may keep (DESIGN.md §2).
"""

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SizedCache(Generic[K, V]):
    """Least-recently-used ``key -> value`` holding at most ``max_size`` in all, each entry
    weighing ``size_of(key, value)``; an entry heavier than the bound is not kept.

    >>> cache = SizedCache[str, str](4, lambda key, value: len(key))
    >>> cache.put("ab", "x"); cache.put("cd", "y"); cache.put("ef", "z")
    >>> cache.get("ab") is None, cache.get("ef")
    (True, 'z')
    """

    def __init__(self, max_size: int, size_of: Callable[[K, V], int]) -> None:
        self._max = max_size
        self._size_of = size_of
        self._size = 0
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()

    def get(self, key: K) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: K, value: V) -> None:
        size = self._size_of(key, value)
        if size > self._max:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self._size -= old[1]
        self._items[key] = (value, size)
        self._size += size
        while self._size > self._max:
            _, (_, evicted) = self._items.popitem(last=False)
            self._size -= evicted


class ByteCache(SizedCache[Hashable, bytes]):
    """Least-recently-used ``key -> bytes`` with at most ``max_bytes`` of values.

    >>> cache = ByteCache(10)
    >>> cache.put("a", b"12345"); cache.put("b", b"123456")
    >>> cache.get("a") is None, cache.get("b")
    (True, b'123456')
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__(max_bytes, _value_length)


def _value_length(_key: Hashable, value: bytes) -> int:
    return len(value)
