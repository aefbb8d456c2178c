"""One writer per shard of a prepared store: a lock file naming its holder (host, pid, start time).

Why a file of our own rather than ``fcntl.flock`` alone: stores live on cluster file systems where ``flock``
is not shared between hosts, and a refusal must say *who* holds the shard. The lock is created with
``os.link`` of a fully written temp file (atomic and exclusive, also over NFS), so it is never seen empty.
A lock whose holder ran on this host and is gone (kill -9, a crash, a reboot) is stale and taken over; the
take-over runs under a local ``flock`` so two runs recovering the same stale lock cannot both win. A lock
held on another host cannot be checked from here: the error names it and the file to delete if that run is
gone. Different shards have different lock files and run concurrently, as before.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from unmask.errors import UnmaskError

LOCKS_DIR = ".locks"


class ShardLockedError(UnmaskError):
    """Another run is preparing this shard of the store."""


def lock_path(root: Path, shard: tuple[int, int]) -> Path:
    return Path(root) / LOCKS_DIR / f"shard-{shard[0]}-of-{shard[1]}.lock"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), so a reused pid is not taken for the holder."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode("ascii", "replace")
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _holder() -> dict[str, Any]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": _start_time(pid), "boot": _boot_id(),
            "since": time.time()}


def _alive_here(holder: dict[str, Any]) -> bool:
    """Whether a holder that ran on this host is still running (same boot, same pid, same start time)."""
    if holder.get("boot") and _boot_id() and holder["boot"] != _boot_id():
        return False  # the machine rebooted since
    try:
        pid = int(holder["pid"])
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except (KeyError, TypeError, ValueError):
        return False
    start = holder.get("start")
    return start is None or _start_time(pid) in (None, start)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "an unknown process (unreadable lock file)"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder.get("since", 0))))
    return f"pid {holder.get('pid')} on host {holder.get('host')} (since {since})"


def _try_create(path: Path, content: bytes) -> bool:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    tmp.write_bytes(content)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def acquire(root: Path, shard: tuple[int, int]) -> tuple[Path, dict[str, Any]]:
    """Take the shard's lock or raise :class:`ShardLockedError` naming the holder. Touches nothing else."""
    path = lock_path(root, shard)
    path.parent.mkdir(parents=True, exist_ok=True)
    me = _holder()
    content = json.dumps(me).encode()
    if _try_create(path, content):
        return path, me
    guard = os.open(path.parent, os.O_RDONLY)  # flock on the folder: no extra file, released on any exit
    try:
        fcntl.flock(guard, fcntl.LOCK_EX)  # one stale-lock recovery at a time on this host
        other = _read(path)
        if other is None and path.exists() and time.time() - path.stat().st_mtime < 60:
            raise ShardLockedError(f"shard {shard[0]}/{shard[1]} of {root} is locked by {_describe(other)} "
                                   f"({path}); retry in a minute or delete that file if no run is active")
        stale = other is None or (other.get("host") == me["host"] and not _alive_here(other))
        if not stale:
            where = "" if other.get("host") == me["host"] else (
                f"; if that run is gone (it ran on another machine, which unmask cannot check), delete {path}")
            raise ShardLockedError(f"shard {shard[0]}/{shard[1]} of {root} is being prepared by "
                                   f"{_describe(other)}{where}")
        path.unlink(missing_ok=True)
        if not _try_create(path, content):
            raise ShardLockedError(f"shard {shard[0]}/{shard[1]} of {root} is being prepared by "
                                   f"{_describe(_read(path))}")
    finally:
        os.close(guard)
    return path, me


def release(path: Path, me: dict[str, Any]) -> None:
    """Remove the lock if it is still ours (a take-over after we were presumed dead is left alone)."""
    if _read(path) == me:
        path.unlink(missing_ok=True)


@contextmanager
def shard_lock(root: Path, shard: tuple[int, int]) -> Iterator[Path]:
    """``with shard_lock(store_root, (i, n)):`` -- exclusive for that shard, released on any exit."""
    path, me = acquire(root, shard)
    try:
        yield path
    finally:
        release(path, me)


__all__ = ["LOCKS_DIR", "ShardLockedError", "acquire", "lock_path", "release", "shard_lock"]
