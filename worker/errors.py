"""Error families.

* :class:`UsageError` - something the user can fix (flags, config, paths): one line, exit 2.
  :class:`ConfigError` is the configuration's kind: one line per problem, all of them at once.
* :class:`InvalidEvent` - an input record that can never be processed; it goes to the dead-letter
  topic with ``reason`` as its error class. Retrying it would fail the same way.
* :class:`FatalError` - the worker cannot go on safely (producer fatal error, auth failure, model
  load failure); it exits non-zero without committing past unfinished work.
"""

from __future__ import annotations

from collections.abc import Sequence


class UsageError(Exception):
    """Bad arguments or configuration; reported in one line (per problem) with exit code 2."""


class ConfigError(UsageError):
    """Every problem of the configuration, one line each naming the key and its source."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = tuple(problems)


class InvalidEvent(Exception):
    """An input event that cannot be processed and belongs on the dead-letter topic."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class FatalError(Exception):
    """The worker must stop (non-zero exit) without committing unfinished work."""
