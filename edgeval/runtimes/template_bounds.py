"""Bounds on user code that edgeval runs: chat templates (jinja2, already sandboxed against file and attribute
access) also get a time bound and a size bound.

- :func:`time_bound`: a watchdog thread raises :class:`TemplateTimeout` inside the rendering thread once the time
  is up (``PyThreadState_SetAsyncExc``: the template's loops are Python bytecode, so it lands at the next one);
  the caller turns it into a :class:`~edgeval.errors.TokenizerError`.
- :func:`bounded_sandbox`: no call, filter or ``*`` / ``**`` / ``+`` operand may be an integer above
  :data:`MAX_INT_ARG`, and ``*`` / ``+`` results are size-checked, so that one C-level operation
  (``'x' * 10**9``, ``'x'|center(10**9)``, ``9**9**9``) cannot exhaust memory or time where the watchdog cannot
  reach it.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import operator
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import TokenizerError

#: the largest integer a template may pass to a call, a filter or an arithmetic operator (also the largest
#: string a ``*`` or ``+`` may build)
MAX_INT_ARG = 1_000_000


class TemplateTimeout(BaseException):
    """Raised inside a rendering thread whose time is up (BaseException: jinja2 must not swallow it)."""


class _Watchdog:
    """One daemon thread that raises :class:`TemplateTimeout` in threads whose deadline has passed (a thread per
    rendering would cost more than the rendering)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.deadlines: dict[int, tuple[int, float]] = {}  # thread ident -> (token, deadline)
        self.thread: threading.Thread | None = None
        self.counter = 0

    def register(self, seconds: float) -> tuple[int, int]:
        with self.cond:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="edgeval-template-watchdog", daemon=True)
                self.thread.start()
            self.counter += 1
            ident = threading.get_ident()
            self.deadlines[ident] = (self.counter, time.monotonic() + seconds)
            self.cond.notify()
            return ident, self.counter

    def unregister(self, ident: int, token: int) -> bool:
        """Remove the entry; True when the watchdog fired for it (its exception may still be pending)."""
        with self.cond:
            entry = self.deadlines.pop(ident, None)
            fired = entry is None or entry[0] != token
            if fired:  # a pending, undelivered exception must not surface later, elsewhere: clear it
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), None)
            return fired

    def _run(self) -> None:
        with self.cond:
            while True:
                now = time.monotonic()
                for ident, (_token, deadline) in list(self.deadlines.items()):
                    if deadline <= now:
                        del self.deadlines[ident]
                        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident),
                                                                   ctypes.py_object(TemplateTimeout))
                wait = min((d for _, d in self.deadlines.values()), default=now + 60) - now
                self.cond.wait(timeout=max(wait, 0.001))


_WATCHDOG = _Watchdog()


@contextlib.contextmanager
def time_bound(seconds: float, source: str | Path | None) -> Iterator[None]:
    """Run the block for at most ``seconds``; TokenizerError naming ``source`` when it takes longer."""
    ident, token = _WATCHDOG.register(seconds)
    try:
        try:
            yield
        finally:
            fired = _WATCHDOG.unregister(ident, token)
        if fired:  # the time ran out just as the block ended: its exception was cleared, raise it here
            raise TemplateTimeout
    except TemplateTimeout:
        raise TokenizerError(f"chat template rendering exceeded its time bound of {seconds:g} s (a template is "
                             "user code: edgeval stops it)", path=source) from None


def _check_int(value: Any) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT_ARG:
        raise TokenizerError(f"chat template uses the number {value}, above edgeval's bound of {MAX_INT_ARG:,}")


def _check_args(args: tuple, kwargs: dict) -> None:
    for value in (*args, *kwargs.values()):
        _check_int(value)


def _check_size(value: Any) -> Any:
    if isinstance(value, (str, list, tuple, bytes)) and len(value) > MAX_INT_ARG:
        raise TokenizerError(f"chat template builds a value of {len(value):,} items, above edgeval's bound of "
                             f"{MAX_INT_ARG:,}")
    return value


def _bounded_filter(func: Callable) -> Callable:
    @functools.wraps(func)  # keeps jinja's pass_context / pass_environment markers
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _check_args(args, kwargs)
        return _check_size(func(*args, **kwargs))

    return wrapper


def bounded_sandbox(**options: Any) -> Any:
    """A :class:`BoundedSandbox` environment (jinja2 is imported here, not with this module)."""
    return _sandbox_class()(**options)


@functools.lru_cache(maxsize=1)
def _sandbox_class() -> type:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class BoundedSandbox(ImmutableSandboxedEnvironment):
        """jinja2's immutable sandbox with integer and size bounds on calls, filters and arithmetic."""

        intercepted_binops = frozenset({"*", "**", "+"})

        def bound_filters(self) -> None:
            """Wrap every registered filter (call after adding your own)."""
            self.filters = {name: _bounded_filter(func) for name, func in self.filters.items()}

        def call_binop(self, context: Any, op: str, left: Any, right: Any) -> Any:
            _check_int(left)
            _check_int(right)
            if op == "*":
                _check_repeat(left, right)
            if op == "**" and isinstance(right, int) and isinstance(left, int) and abs(left) > 1 and right > 64:
                raise TokenizerError(f"chat template raises {left} to the power {right}: above edgeval's bound")
            return _check_size(_BINOPS[op](left, right))

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
            _check_args(args, kwargs)
            return _check_size(super().call(__context, __obj, *args, **kwargs))

    return BoundedSandbox


_BINOPS = {"*": operator.mul, "**": operator.pow, "+": operator.add}
_SEQUENCES = (str, list, tuple)


def _check_repeat(left: Any, right: Any) -> None:
    """``sequence * n`` / ``n * sequence`` must not build more than MAX_INT_ARG items."""
    seq, count = (left, right) if isinstance(left, _SEQUENCES) else (right, left)
    if isinstance(seq, _SEQUENCES) and isinstance(count, int) and count * len(seq) > MAX_INT_ARG:
        raise TokenizerError(f"chat template repeats a value to {count * len(seq):,} items, above edgeval's bound "
                             f"of {MAX_INT_ARG:,}")


__all__ = ["bounded_sandbox", "TemplateTimeout", "time_bound", "MAX_INT_ARG"]
