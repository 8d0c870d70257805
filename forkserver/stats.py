"""Request counters that children keep and the parent (and the metrics child) can read.

Each child counts what it serves into its own slot of a shared memory region:
requests by method and status class, a duration histogram, bytes sent,
refusals by status. A slot is an array of 64-bit counters; the parent gives a
free slot to each child it forks, and a slot is only ever written by the one
child that holds it. Nothing is sent per request (no system call at all, no
queue that could fill or fall behind, no wakeup of the parent), and counters
are never reset: a slot's next owner goes on adding to them, so the totals
are simply the sums over every slot ever used, read whenever they are wanted.

The region is a file that survives a hot upgrade (its descriptor is handed
over across exec), so children of the old code keep counting where the new
code reads.
"""

from __future__ import annotations

import bisect
import mmap
import os

METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other")
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)  # then +Inf
REFUSALS = (400, 408, 413, 414, 417, 431, 501, 505)  # then any other

# Where each counter sits in a slot.
BYTES = 0
DURATION_SUM_US = 1
REQUESTS = 2                                     # len(METHODS) x len(STATUS_CLASSES)
DURATION_BUCKETS = REQUESTS + len(METHODS) * len(STATUS_CLASSES)
REFUSED = DURATION_BUCKETS + len(BUCKETS) + 1
FIELDS = REFUSED + len(REFUSALS) + 1
LAYOUT = f"forkserver-stats-1/{FIELDS}"         # a region with another layout is not read

_METHOD_INDEX = {method: index for index, method in enumerate(METHODS[:-1])}
_REFUSAL_INDEX = {status: index for index, status in enumerate(REFUSALS)}
SLOT_BYTES = FIELDS * 8


class Region:
    """One shared region of `capacity` slots, backed by a descriptor that exec keeps."""

    def __init__(self, fd: int, capacity: int, used: int = 0):
        self.fd = fd
        self.capacity = capacity
        self.used = used  # slots ever handed out, from 0: the only ones that can hold counts
        self._map = mmap.mmap(fd, capacity * SLOT_BYTES)
        self.view = memoryview(self._map).cast("Q")

    @classmethod
    def create(cls, capacity: int) -> "Region":
        size = capacity * SLOT_BYTES
        if hasattr(os, "memfd_create"):
            fd = os.memfd_create("forkserver-stats", os.MFD_CLOEXEC)
        else:  # macOS: an unlinked file that only its descriptor reaches
            path = os.path.join(os.environ.get("TMPDIR") or "/tmp", f"forkserver-stats-{os.getpid()}")
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            os.unlink(path)
        os.ftruncate(fd, size)
        return cls(fd, capacity)

    def close(self) -> None:
        self.view.release()
        self._map.close()
        os.close(self.fd)

    def sums(self, first: int = 0, last: int = FIELDS) -> list[int]:
        """Counters first..last-1 summed over every slot used so far."""
        view = self.view
        totals = [0] * (last - first)
        for base in range(0, self.used * FIELDS, FIELDS):
            for index, value in enumerate(view[base + first:base + last]):
                totals[index] += value
        return totals


class Stats:
    """The parent's side: slots handed out to children, and the regions they live in."""

    def __init__(self, capacity: int, inherited: dict | None = None, busy=()):
        """`inherited` is what handover() gave the previous program; `busy`, the slots its children hold."""
        self.regions: list[Region] = []
        self.lost_layout = None  # an inherited region of another layout, whose counts could not be kept
        if inherited and inherited.get("layout") == LAYOUT:
            self.regions = [Region(fd, size, used) for fd, size, used in inherited["regions"]]
        elif inherited:
            for fd, _, _ in inherited["regions"]:
                os.close(fd)
            self.lost_layout = inherited.get("layout")
        if not self.regions or self.regions[-1].capacity < capacity:
            self.regions.append(Region.create(capacity))
        self.current = self.regions[-1]
        # Freed slots, reused last in, first out, so that few slots are ever used.
        # The parent pops and appends to this list itself: no call per fork.
        busy = set(busy)
        self.free = [slot for slot in range(self.current.used) if slot not in busy]

    def new_slot(self) -> int:
        """A slot never used before (when no freed one is left)."""
        slot = self.current.used
        self.current.used += 1
        return slot

    def totals(self, first: int = 0, last: int = FIELDS) -> list[int]:
        """Counters first..last-1, summed over every region and slot."""
        totals = [0] * (last - first)
        for region in self.regions:
            for index, value in enumerate(region.sums(first, last)):
                totals[index] += value
        return totals

    def requests_served(self) -> int:
        return sum(self.totals(REQUESTS, DURATION_BUCKETS))

    def handover(self) -> dict:
        for region in self.regions:
            os.set_inheritable(region.fd, True)
        return {"layout": LAYOUT, "regions": [(r.fd, r.capacity, r.used) for r in self.regions]}


class SlotCounter:
    """A child's side: counts one connection's requests into its slot. Cheap on purpose:
    the parent builds one before it forks, and a child only sets ``slot``."""

    __slots__ = ("view", "slot")

    def __init__(self, region: Region, slot: int = 0):
        self.view = region.view
        self.slot = slot

    def request(self, method: str, status: int, seconds: float, sent: int) -> None:
        view, base = self.view, self.slot * FIELDS
        status_class = status // 100 - 1
        if 0 <= status_class < 5:
            view[base + REQUESTS + _METHOD_INDEX.get(method, 7) * 5 + status_class] += 1
        view[base + BYTES] += sent
        view[base + DURATION_SUM_US] += int(seconds * 1_000_000)
        view[base + DURATION_BUCKETS + bisect.bisect_left(BUCKETS, seconds)] += 1

    def refusal(self, status: int, sent: int) -> None:
        view, base = self.view, self.slot * FIELDS
        view[base + REFUSED + _REFUSAL_INDEX.get(status, len(REFUSALS))] += 1
        view[base + BYTES] += sent

