"""Turns for notebooks that make starts side by side: at most ``slots`` of them execute at once, and a free slot goes
to the waiting notebook of the best (lowest) rank.

The Makefile ranks the notebooks by the longest chain of notebooks each one heads (01 -> 05 -> 09 first), lets make
start every notebook whose inputs are ready, and passes ``--slots`` and ``--rank`` to ``lrmsafety.pipeline run``,
which waits here before its kernel starts. GNU make cannot order them itself: with ``--jobs=2`` it commits to the
next runnable notebook of its list while both slots are busy, and a notebook whose inputs finish meanwhile waits for
make's next pass over the list (05 then starts after every independent notebook, and the long chain ends last).

Slots are files locked with ``flock`` (the kernel releases a lock when its process dies); a waiting notebook leaves a
ticket named by its rank and process id, removed when it gets its turn, and ignored once its process is gone.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

POLL_SECONDS = 0.2
# make starts the ready notebooks in one burst, and the notebooks that waited for one as soon as it ends: a notebook
# waits this long after queueing before it first looks for a slot, and a released slot stays free this long, so that
# they have all queued (a Python start takes about a second on a busy machine) and the best rank goes first
SETTLE_SECONDS = 2.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def waiting(folder: Path) -> list[tuple[int, int]]:
    """(rank, pid) of the notebooks waiting in ``folder``, best first; tickets of processes that are gone are
    removed."""
    found = []
    for ticket in folder.glob("ticket-*-*"):
        try:
            rank, pid = (int(part) for part in ticket.name.split("-")[1:])
        except ValueError:
            continue
        if _alive(pid):
            found.append((rank, pid))
        else:
            ticket.unlink(missing_ok=True)
    return sorted(found)


def _free_slots(folder: Path, slots: int, settle: float) -> list:
    """The slot files this process could lock now and that were released at least ``settle`` seconds ago, locked
    (open file objects). Released: the holder touches its slot file on leaving, so that make has started the
    notebooks that waited for it (and they have queued) before anyone takes the slot."""
    import fcntl  # POSIX only: imported here so that the pipeline's other commands run anywhere

    held = []
    for i in range(slots):
        path = folder / f"slot-{i}.lock"
        handle = open(path, "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        if time.time() - path.stat().st_mtime >= settle:
            held.append(handle)
        else:
            handle.close()
    return held


@contextlib.contextmanager
def turn(folder: Path | str, slots: int, rank: int, poll: float = POLL_SECONDS, settle: float = SETTLE_SECONDS):
    """Wait until this process may run (one of ``slots`` is free and fewer better-ranked notebooks wait than slots
    are free; first after ``settle`` seconds), then hold that slot for the block."""
    if slots < 1:
        raise ValueError(f"slots must be at least 1, got {slots}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    me = (int(rank), os.getpid())
    ticket = folder / f"ticket-{me[0]}-{me[1]}"
    ticket.touch()
    slot = None
    try:
        time.sleep(settle)
        while slot is None:
            ahead = sum(other < me for other in waiting(folder))
            free = _free_slots(folder, slots, settle)
            if ahead < len(free):
                slot = free.pop(0)
            for handle in free:  # a slot this process does not take goes back at once
                handle.close()
            if slot is None:
                time.sleep(poll)
        ticket.unlink(missing_ok=True)
        yield
    finally:
        ticket.unlink(missing_ok=True)
        if slot is not None:
            os.utime(slot.name)  # released now (see _free_slots)
            slot.close()  # closing the file releases its lock
