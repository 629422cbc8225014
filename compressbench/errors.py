"""User-facing errors. The CLI prints these as one line (``--traceback`` for the trace)."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class CompressBenchError(Exception):
    """Base of every error that is the user's to fix (bad suite, bad data, bad plugin)."""


class ConfigError(CompressBenchError):
    """A suite file is invalid: the message names the file, the key path and a fix."""


class PluginError(CompressBenchError):
    """A plugin failed to load, registered a duplicate name, or broke the hook contract."""


class DataError(CompressBenchError):
    """A data file is missing or malformed: the message names the file (and line)."""


class HubUnavailable(DataError):
    """A dataset had to come from the Hugging Face Hub, and could not (offline, typically)."""


def require(module: str, extra: str):
    """Import an optional dependency, or fail naming the extra that installs it."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"{module} is not installed: pip install 'compressbench[{extra}]' "
                          f"(import failed: {exc})") from None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' Did you mean: x?' when a close match exists, else ''."""
    close = difflib.get_close_matches(str(word), sorted(choices), n=3, cutoff=0.6)
    return f" Did you mean: {', '.join(close)}?" if close else ""


class Unsupported(CompressBenchError):
    """This backend cannot run this model; the message says why (recorded, not an error)."""
