"""The replay-aware logger of a workflow run
(:attr:`raftoral.WorkflowContext.logger`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, MutableMapping

from . import _core

if TYPE_CHECKING:
    _LoggerAdapter = logging.LoggerAdapter[logging.Logger]
else:  # not subscriptable at run time before Python 3.11
    _LoggerAdapter = logging.LoggerAdapter


class _WorkflowLogger(_LoggerAdapter):
    """:attr:`raftoral.WorkflowContext.logger`: drops records while the run replays,
    tags the others with the workflow id and the next step's position."""

    def __init__(self, run: _core.Run) -> None:
        super().__init__(logging.getLogger("raftoral.workflow"), {})
        self._run = run

    def isEnabledFor(self, level: int) -> bool:
        return self.logger.isEnabledFor(level) and not self._run.is_replaying

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        # Every method (info, warning, exception, ...) comes through here.
        if not self.isEnabledFor(level):
            return
        run = self._run
        workflow_id, step = run.workflow_id, run.next_position
        prefix = f"[workflow {workflow_id} step {step}] "
        if args:  # the message is %-formatted with them: the prefix stays literal
            prefix = prefix.replace("%", "%%")
        extra: MutableMapping[str, object] = dict(kwargs.get("extra") or {})
        extra["workflow_id"] = workflow_id
        extra["step"] = step
        kwargs["extra"] = extra
        # The record names the caller's line, not this method's.
        kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 1
        self.logger.log(level, f"{prefix}{msg}", *args, **kwargs)
