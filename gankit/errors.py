"""gankit's own error types.

The library raises these for problems a user can fix (a wrong name, a bad option, a corrupt file); the CLI turns
each into one line and exit code 2. Anything else escaping gankit is a bug.
"""

from __future__ import annotations

from pydantic import ValidationError


class GankitError(Exception):
    """Base class: a problem the user can fix. The message is one line saying what was wrong and what to do."""

    exit_code = 2
    """What the CLI exits with: 2 for bad input; subclasses for other outcomes (130: interrupted)."""


class PluginError(GankitError):
    """A plugin is unknown, ambiguous, broken or of the wrong kind."""


class PluginFailure(PluginError):
    """A plugin's own code raised (constructor, forward, loss, dataset load): one line naming the plugin, its
    distribution and the exception's message. ``details`` keeps the full traceback, which ``gankit --debug`` shows and
    a run writes to ``error.log`` in its folder."""

    def __init__(self, message: str, *, details: str = "") -> None:
        super().__init__(message)
        self.details = details


class ContractError(PluginError):
    """A plugin returned something the contract rules out (a shape, a dtype, values out of range), seen by the
    check gankit runs before training."""


class ConfigError(GankitError):
    """An option or configuration file failed validation."""


class DataError(GankitError):
    """A dataset is missing, corrupt or cannot be fetched."""


class DivergenceError(GankitError):
    """The losses or weights stopped being finite, or fp16 scaling kept skipping steps."""


class TrainingInterrupted(GankitError):
    """SIGINT or SIGTERM ended the run after a checkpoint was written; the message says how to resume."""

    exit_code = 130


class FileFormatError(GankitError):
    """A file gankit reads or writes (safetensors, an image grid) is missing, corrupt, or cannot be written."""


class ExportError(FileFormatError):
    """A generator export is not one gankit can load, or cannot be written."""


class CheckpointError(FileFormatError):
    """A training checkpoint is not one gankit can load, or cannot be written."""


def format_validation_error(error: ValidationError, *, what: str) -> str:
    """One line naming each bad field and why, for options that came from a user."""
    problems = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "options"
        given = item.get("input")
        shown = f"={given!r}" if item["type"] != "missing" and not isinstance(given, dict) else ""
        problems.append(f"{location}{shown}: {item['msg']}")
    return f"invalid {what}: " + "; ".join(problems)
