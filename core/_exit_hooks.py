"""Delivery at process exit where `atexit` does not run: multiprocessing children.

A child process ends with `os._exit`, so `atexit` never runs there; multiprocessing's own
finalizers do (for `Process` and `Pool` workers, fork and spawn alike). Their registry is cleared
in a forked child, hence the after-fork re-registration. `Pool.terminate()` (also what
`with Pool() as pool:` does on exit) ends its workers with SIGTERM, which runs no finalizer:
there, and only when SIGTERM has its default disposition, a handler shuts the clients down,
restores the default and re-sends the signal, so the process still ends by SIGTERM.

The handler runs wherever the main thread was interrupted, possibly inside our own code holding
one of its locks: it delivers from a separate thread and waits for it at most its budget, so it
can never deadlock the process (a `Pool.terminate()` would then wait for it forever). When the
signal arrives while the exit hook is already delivering, it lets that finish (it is bounded by
the clients' shutdown timeouts) and the process ends normally; the signal is sent again after a
grace period, so a process that is somehow still there then ends by it all the same.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["register_exit_hooks"]

# Seconds a SIGTERM'd child may spend delivering (or spooling) before it ends.
_SIGTERM_BUDGET = 2.0
# Seconds after a SIGTERM that interrupted the exit hook before the signal is sent again: the
# hook is bounded by the clients' shutdown timeouts (5 s by default).
_EXIT_HOOK_GRACE = 15.0

_lock = threading.Lock()
_registered = False
_shutdown_all: Callable[[float | None], None] | None = None
_exiting = False  # the exit hook is delivering


def register_exit_hooks(shutdown_all: Callable[[float | None], None]) -> None:
    """Run `shutdown_all(cap)` at the exit of this process, multiprocessing children included.

    `cap` bounds each client's shutdown timeout (None: its own `shutdown_timeout`).
    """
    global _registered, _shutdown_all
    with _lock:
        _shutdown_all = shutdown_all
        if _registered:
            return
        _registered = True
    import multiprocessing
    import multiprocessing.util as mp_util

    mp_util.Finalize(None, _at_exit, exitpriority=10)
    mp_util.register_after_fork(_after_fork_marker, _reregister_in_child)
    # A spawned child imports the main module (and a client made there) while it is still
    # inheriting its parent's state, before it knows its parent process.
    inheriting = getattr(multiprocessing.current_process(), "_inheriting", False)
    if multiprocessing.parent_process() is not None or inheriting:
        _deliver_on_sigterm()


def _at_exit() -> None:
    global _exiting
    _exiting = True
    try:
        if _shutdown_all is not None:
            _shutdown_all(None)
    finally:
        _exiting = False


def _deliver_within(budget: float) -> None:
    """Shut the clients down from a helper thread, waiting for it at most `budget` (+1) s."""
    shutdown_all = _shutdown_all
    if shutdown_all is None:
        return

    def deliver() -> None:
        try:
            shutdown_all(budget)
        except Exception:
            pass

    helper = threading.Thread(target=deliver, name="posthog-llm-sigterm", daemon=True)
    try:
        helper.start()
        helper.join(budget + 1.0)
    except Exception:
        pass


def _resend_later(delay: float) -> None:
    import signal

    timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGTERM))
    timer.daemon = True
    try:
        timer.start()
    except Exception:
        os.kill(os.getpid(), signal.SIGTERM)


def _deliver_on_sigterm() -> None:
    import signal

    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return

        def on_sigterm(signum: int, frame: Any) -> None:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            if _exiting:
                # Interrupted the exit hook's delivery: let it finish and the process end; the
                # signal is sent again should the process still be there after the hook's own
                # bound, so a SIGTERM is never lost (`Pool.terminate()` would wait forever).
                _resend_later(_EXIT_HOOK_GRACE)
                return
            _deliver_within(_SIGTERM_BUDGET)
            os.kill(os.getpid(), signal.SIGTERM)

        signal.signal(signal.SIGTERM, on_sigterm)
    except (ValueError, OSError, AttributeError):
        pass  # not the main thread, or no SIGTERM on this platform


class _AfterForkMarker:
    """A long-lived object for `multiprocessing.util.register_after_fork` (it keeps a weakref)."""


_after_fork_marker = _AfterForkMarker()


def _reregister_in_child(_: Any) -> None:
    global _registered, _exiting
    with _lock:
        _registered = False
        _exiting = False
        shutdown_all = _shutdown_all
    if shutdown_all is not None:
        register_exit_hooks(shutdown_all)
