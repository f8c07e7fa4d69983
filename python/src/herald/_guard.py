"""What the handles share: ending as `failed` on an exception (naming it, which still
propagates) and as `succeeded` on a normal exit."""

from __future__ import annotations

import builtins
from typing import Any

from ._wire import (
    check_str,
    describe_exception,
)

builtins_id = builtins.id  # `id` is a parameter's name in the handles, as in the protocol


class _Guard:
    """Context-manager plumbing shared by the handles: an exception ends the handle as
    failed, naming it, and propagates; a normal exit ends it as succeeded."""

    _finished: bool

    def _exit_ok(self) -> None:
        raise NotImplementedError

    def _exit_error(self, error: str) -> None:
        raise NotImplementedError

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._finished:
            return
        if exc is None:
            self._exit_ok()
        else:
            self._exit_error(describe_exception(exc))

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)


def _error_text(name: str, error: Any) -> str:
    if isinstance(error, BaseException):
        return describe_exception(error)
    return check_str(name, error, empty=True)
