"""Stack errors: each one is a single actionable line, never a traceback (Jupyter and the CLI alike)."""

from __future__ import annotations


class StackError(RuntimeError):
    """A stack problem explained in one line that says what to do about it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def _render_traceback_(self) -> list[str]:
        # IPython calls this instead of printing the traceback.
        return [f"StackError: {self.message}"]


class PortTaken(StackError):
    """A port the stack needs is held by a process the stack did not start."""


class MissingPrerequisite(StackError):
    """A binary, jar folder or environment the native stack needs is not installed."""


class ServiceFailed(StackError):
    """A service exited or did not answer in time."""
