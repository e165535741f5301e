"""The runner's errors, under one base class.

:class:`ItemError` is one item's trouble: a job records it on that item and
the run goes on. :class:`StateError` is the run's: the state cannot be used,
so the run ends (exit 3).
"""

from __future__ import annotations

from hifly_batch.errors import ConfigError, HiflyBatchError


class RunError(HiflyBatchError):
    """Root of the runner's errors."""


class ItemError(RunError):
    """One item's step could not be done; recorded on the item, the run goes on."""


class OutputOutside(ItemError):
    """An output path, or a link on its way, leads out of the output folder."""


class NoSuchPublicVoice(ItemError):
    """A ``public:`` voice title that the account's public voices do not have."""


class OutputUnavailable(ItemError):
    """A finished task no longer answers with an output to download."""


class StateError(RunError):
    """The state cannot be used; the message names it and says what to do."""

    exit_status = ConfigError.exit_status


class RehearsalOnly(StateError):
    """A command for the real service's runs found only a rehearsal's record: the same
    command with ``--sandbox`` reads it."""
