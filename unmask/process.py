"""Child processes that do not outlive their parent.

A pool worker (``unmask prepare``) or DataLoader worker (``unmask train``) whose parent is killed with
SIGKILL would otherwise go on with its items and then idle forever, holding memory and files. Call
:func:`exit_with_parent` first thing in the child.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time


def exit_with_parent(parent_pid: int | None = None, poll_s: float = 0.5) -> None:
    """End this process when ``parent_pid`` (default: the current parent) dies.

    Linux: the kernel sends SIGKILL at the parent's death (``PR_SET_PDEATHSIG``). Everywhere, a daemon thread
    polls the parent pid as a fallback (macOS has no PDEATHSIG, and on Linux it follows the *thread* that
    spawned the child). Work the child had not finished is redone by the next run (records are written last).
    """
    parent_pid = os.getppid() if parent_pid is None else int(parent_pid)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="unmask-parent-watch", daemon=True).start()


__all__ = ["exit_with_parent"]
