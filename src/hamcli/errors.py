"""The one exception family of hamcli.

Library code raises these with a message that names the file, what was expected and the
next step; the CLI prints the message as one red line on stderr and exits with `exit_code`.
"""

from __future__ import annotations


class HamcliError(Exception):
    """Base class: a problem the user can fix, described in one line."""

    exit_code = 1


class UsageError(HamcliError):
    """An option or argument that cannot be used as given."""

    exit_code = 2


class DataError(HamcliError):
    """Input data (metadata, images, archives, prepared datasets) is missing or malformed."""


class DownloadError(HamcliError):
    """A download failed or did not verify."""


class NotFoundError(HamcliError):
    """A dataset, run or checkpoint that was asked for does not exist."""


class ModelError(HamcliError):
    """A model or checkpoint cannot be built or loaded."""


class DiskFullError(HamcliError):
    """The device ran out of space while hamcli was writing; nothing half-written was kept."""
