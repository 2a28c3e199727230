"""gankit's own error types.

The library raises these for problems a user can fix (a wrong name, a bad option, a corrupt file); the CLI turns
each into one line and exit code 2. Anything else escaping gankit is a bug.
"""

from __future__ import annotations


class GankitError(Exception):
    """Base class: a problem the user can fix. The message is one line saying what was wrong and what to do."""


class PluginError(GankitError):
    """A plugin is unknown, ambiguous, broken or of the wrong kind."""


class ConfigError(GankitError):
    """An option or configuration file failed validation."""


class DataError(GankitError):
    """A dataset is missing, corrupt or cannot be fetched."""


class ExportError(GankitError):
    """An export or checkpoint file is not one gankit can load."""
