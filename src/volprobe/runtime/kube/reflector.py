"""A list+watch cache ("informer") of one resource collection, kept as slim projections in memory.

The loop is client-go's reflector, reduced to what volprobe needs:

1. list the collection in pages and reconcile the store with the result, emitting ADDED, MODIFIED
   and DELETED for every difference, so changes that happened while we were not watching (deletions
   above all) are seen;
2. watch from the list's resourceVersion with bookmarks and a randomised server timeout (spreading
   reconnections of many watches over time);
3. when the watch ends: re-watch from the last resourceVersion seen (bookmarks advance it, so a
   re-watch after a quiet hour does not start from an expired version);
4. on 410 Gone (an ERROR event or an HTTP error: our resourceVersion left the server's window)
   relist at once — unless the previous list was less than a second ago, which means something is
   wrong and we back off rather than hammer the server with lists;
5. on connection or server errors back off (jittered exponential, capped) and re-watch;
6. when nothing at all — not even a bookmark, which the server sends about once a minute — arrived
   for ``inactivity_timeout`` seconds, assume a dead connection and re-watch.

Objects pass through ``project`` before they are stored: with thousands of nodes and pods, keeping
a few fields instead of whole objects is what keeps the controller small. Changes are detected by
``metadata.resourceVersion``, which the store keeps next to each projection, so projections need not
be comparable.

A malformed event, a failing projection or a failing ``on_event`` callback is logged and skipped:
the cache must outlive any single bad object. `Reflector.run` only ends by cancellation.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

import httpx

from volprobe.runtime.kube.client import KubeClient
from volprobe.runtime.kube.errors import ApiError, GoneError, NotFoundError, error_from_status

logger = logging.getLogger(__name__)

T = TypeVar("T")
ABSENT_RETRY = 30.0
"""Seconds between looks at a collection that does not exist (`missing_ok`)."""
Raw = dict[str, Any]


@dataclass
class ReflectorStats:
    """Counters for metrics and for tests that must prove which path was taken."""

    lists: int = 0
    watches: int = 0
    events: int = 0
    bookmarks: int = 0
    gone: int = 0
    inactivity_timeouts: int = 0
    errors: int = 0
    malformed: int = 0
    last_relist_seconds: float = 0.0


@dataclass
class Backoff:
    """Full-jitter exponential back-off: a random delay in [0, min(cap, initial * 2**n)]."""

    initial: float = 0.5
    cap: float = 30.0
    rng: random.Random | None = None
    failures: int = 0

    def next(self) -> float:
        ceiling = min(self.cap, self.initial * 2**self.failures)
        self.failures += 1
        return (self.rng or random).uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.failures = 0


class _Relist(Exception):
    """The watch cannot continue from our resourceVersion."""


def object_key(obj: Mapping[str, Any]) -> str:
    """``namespace/name``, or ``name`` for cluster-scoped objects (client-go's MetaNamespaceKey)."""
    metadata = obj["metadata"]
    name = metadata["name"]
    namespace = metadata.get("namespace")
    if not isinstance(name, str) or not name:
        raise ValueError("object without a name")
    return f"{namespace}/{name}" if namespace else name


class Reflector(Generic[T]):
    """Keeps `store` equal to the collection at `path` (filtered by the selectors).

    Example::

        nodes = Reflector(client, "/api/v1/nodes", project=lambda n: n["metadata"]["labels"])
        task = asyncio.create_task(nodes.run())
        await nodes.synced.wait()
        labels = nodes.store["kwok-node-0"]
    """

    @overload
    def __init__(
        self: Reflector[Raw],
        client: KubeClient,
        path: str,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        project: None = None,
        on_event: Callable[[str, str, Raw | None, Raw | None], None] | None = None,
        page_size: int = 500,
        inactivity_timeout: float = 70.0,
        watch_timeout: tuple[int, int] = (240, 360),
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
        missing_ok: bool = False,
    ) -> None: ...

    @overload
    def __init__(
        self,
        client: KubeClient,
        path: str,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        project: Callable[[Raw], T],
        on_event: Callable[[str, str, T | None, T | None], None] | None = None,
        page_size: int = 500,
        inactivity_timeout: float = 70.0,
        watch_timeout: tuple[int, int] = (240, 360),
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
        missing_ok: bool = False,
    ) -> None: ...

    def __init__(
        self,
        client: KubeClient,
        path: str,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        project: Callable[[Raw], Any] | None = None,
        on_event: Callable[[str, str, Any, Any], None] | None = None,
        page_size: int = 500,
        inactivity_timeout: float = 70.0,
        watch_timeout: tuple[int, int] = (240, 360),
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
        missing_ok: bool = False,
    ) -> None:
        """`missing_ok`: the collection may not exist (a CRD that is not installed); until it
        does, the store is empty and counts as synced."""
        self.client = client
        self.missing_ok = missing_ok
        self.absent = False
        self.path = path
        self.label_selector = label_selector
        self.field_selector = field_selector
        self._project: Callable[[Raw], Any] = project or (lambda obj: obj)
        self._on_event = on_event
        self.page_size = page_size
        self.inactivity_timeout = inactivity_timeout
        self.watch_timeout = watch_timeout
        self._rng = rng or random.Random()
        self._backoff = backoff or Backoff(rng=self._rng)
        self.store: dict[str, T] = {}
        self._versions: dict[str, str] = {}
        self.resource_version: str | None = None
        self._listed_at = -math.inf
        self.synced = asyncio.Event()
        self.stats = ReflectorStats()

    @property
    def live(self) -> bool:
        """Synced, and the latest list or watch did not fail: the store is current, not just
        the last thing seen before the API server went away."""
        return self.synced.is_set() and self._backoff.failures == 0

    async def run(self) -> None:
        """List, watch, repeat — until cancelled."""
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                if await self._watch_once():
                    self._backoff.reset()
                    continue
                delay = self._backoff.next()
                logger.info("watch of %s ended at once; re-watching in %.1fs", self.path, delay)
            except _Relist as why:
                logger.info("relisting %s: %s", self.path, why)
                need_list = True
                if time.monotonic() - self._listed_at >= 1.0:
                    continue
                delay = self._backoff.next()
            except NotFoundError as error:
                if self.missing_ok and need_list:
                    if not self.absent:
                        logger.info("%s does not exist (its CRD is not installed?)", self.path)
                    self._absent()
                    delay = ABSENT_RETRY
                else:
                    self.stats.errors += 1
                    delay = self._backoff.next()
                    logger.warning(
                        "%s of %s failed (%s); retrying in %.1fs",
                        self._doing(need_list),
                        self.path,
                        error,
                        delay,
                    )
            except (ApiError, httpx.TransportError, TimeoutError) as error:
                self.stats.errors += 1
                delay = self._backoff.next()
                logger.warning(
                    "%s of %s failed (%s); retrying in %.1fs", self._doing(need_list), self.path, error, delay
                )
            except Exception:
                self.stats.errors += 1
                delay = self._backoff.next()
                logger.exception("reflector of %s failed; retrying in %.1fs", self.path, delay)
            await asyncio.sleep(delay)

    @staticmethod
    def _doing(need_list: bool) -> str:
        return "list" if need_list else "watch"

    # -- list ----------------------------------------------------------------------------------

    def _absent(self) -> None:
        """The collection does not exist (an optional CRD not installed): empty, and in sync."""
        for key in list(self.store):
            self._remove(key)
        self.absent = True
        self.synced.set()

    async def _relist(self) -> None:
        started = time.monotonic()
        self.stats.lists += 1
        result = await self.client.list(
            self.path,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            limit=self.page_size,
        )
        seen: set[str] = set()
        for obj in result.items:
            key = self._apply(obj)
            if key is not None:
                seen.add(key)
        for key in [key for key in self.store if key not in seen]:
            self._remove(key)
        self.resource_version = result.resource_version
        self._listed_at = time.monotonic()
        self.stats.last_relist_seconds = self._listed_at - started
        self.absent = False
        self.synced.set()

    # -- watch ---------------------------------------------------------------------------------

    async def _watch_once(self) -> bool:
        """One watch connection; True if it delivered anything (the connection was healthy)."""
        if self.resource_version is None:
            raise _Relist("no resourceVersion")
        self.stats.watches += 1
        started = time.monotonic()
        received = False
        events = self.client.watch(
            self.path,
            resource_version=self.resource_version,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            timeout_seconds=self._rng.randint(*self.watch_timeout),
            allow_bookmarks=True,
            read_timeout=self.inactivity_timeout + 5,
        )
        try:
            async with aclosing(events):
                while True:
                    try:
                        async with asyncio.timeout(self.inactivity_timeout):
                            event = await anext(events)
                    except StopAsyncIteration:
                        return received or time.monotonic() - started > 1.0
                    except TimeoutError:
                        self.stats.inactivity_timeouts += 1
                        # An empty collection may send no bookmarks: quiet is normal, not a fault.
                        logger.info(
                            "nothing from the watch of %s for %.0fs; reconnecting",
                            self.path,
                            self.inactivity_timeout,
                        )
                        return True
                    received = True
                    self._handle(event)
        except GoneError as error:
            self.stats.gone += 1
            raise _Relist(str(error)) from error

    def _handle(self, event: Mapping[str, Any]) -> None:
        self.stats.events += 1
        kind = event.get("type")
        obj = event.get("object")
        if not isinstance(obj, dict):
            self._malformed("event without an object", event)
            return
        if kind == "ERROR":
            error = error_from_status(obj)
            if error.gone:
                self.stats.gone += 1
                raise _Relist(str(error))
            raise error
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if kind == "BOOKMARK":
            self.stats.bookmarks += 1
        elif kind in ("ADDED", "MODIFIED"):
            if self._apply(obj) is None:
                return
        elif kind == "DELETED":
            try:
                key = object_key(obj)
            except (KeyError, TypeError, ValueError):
                self._malformed("DELETED without a key", event)
                return
            self._remove(key, obj)
        else:
            self._malformed(f"unknown event type {kind!r}", event)
            return
        if isinstance(version, str) and version:
            self.resource_version = version

    # -- store ---------------------------------------------------------------------------------

    def _apply(self, obj: Raw) -> str | None:
        """Store `obj` if it is new or changed; return its key (None if it is malformed).

        The event type is derived from the store, not taken from the server, so that consumers see
        a stream consistent with `store` even across relists.
        """
        try:
            key = object_key(obj)
            version = str(obj["metadata"].get("resourceVersion", ""))
            if key in self._versions and self._versions[key] == version:
                return key
            new: T = self._project(obj)
        except Exception:
            self._malformed("cannot key or project an object", obj)
            return None
        existed = key in self.store
        old = self.store.get(key)
        self.store[key] = new
        self._versions[key] = version
        self._emit("MODIFIED" if existed else "ADDED", key, old, new)
        return key

    def _remove(self, key: str, final: Raw | None = None) -> None:
        old = self.store.pop(key, None)
        self._versions.pop(key, None)
        if old is None and final is not None:
            try:
                old = self._project(final)
            except Exception:
                self._malformed("cannot project a deleted object", final)
        self._emit("DELETED", key, old, None)

    def _emit(self, kind: str, key: str, old: T | None, new: T | None) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(kind, key, old, new)
        except Exception:
            logger.exception("on_event failed for %s %s", kind, key)

    def _malformed(self, what: str, data: Any) -> None:
        self.stats.malformed += 1
        logger.warning("%s: skipping malformed data in %s: %.300r", what, self.path, data)
