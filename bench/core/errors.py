"""The error family: every error a user can cause (a name, an argument, a file, a data set, a weight file, a
result) is a :class:`HemabenchError` whose message names the file, key or argument and says the fix. The CLI
prints these as one line; anything else is a bug and is shown with its traceback.

Each class also derives from the built-in exception its callers would expect (``ValueError`` for a bad value,
``FileNotFoundError`` for a missing path, ...), so ``except ValueError`` keeps working around library calls.
"""

from __future__ import annotations


class HemabenchError(Exception):
    """Base of every error a user can cause and fix; ``str()`` is the whole message."""


class UsageError(HemabenchError, ValueError):
    """An argument, option or setting that cannot work (a bad value, options that exclude each other)."""


class NotFoundError(HemabenchError, FileNotFoundError):
    """A file or folder the user named does not exist."""

    def __str__(self) -> str:  # FileNotFoundError would prefix "[Errno ...]" when given two arguments
        return str(self.args[0]) if self.args else ""


class RegistryError(HemabenchError, KeyError):
    """An unknown or duplicate name, or a target that is not what its registry holds."""

    def __str__(self) -> str:  # KeyError.__str__ would quote the message
        return str(self.args[0]) if self.args else ""


class ExtractorError(HemabenchError, TypeError):
    """A model or entry that does not keep the extractor contract (no feature dim, no token output, ...)."""


class WeightsError(HemabenchError, ValueError):
    """A weight file that cannot be read or does not fit the architecture."""


class MissingWeightsError(WeightsError):
    """The entry needs weights and none were given or found."""


class ChecksumError(WeightsError):
    """A weight file whose sha256 differs from the published one."""


class DataError(HemabenchError, ValueError):
    """A data set that is missing, empty or malformed."""


class SplitError(DataError):
    """A split file or split request that does not fit the data set."""


class BadImageError(DataError):
    """An image file that cannot be decoded."""


class ResultsError(HemabenchError, ValueError):
    """A results folder that is missing, or a result record that cannot be read."""


class ResultsExistError(ResultsError):
    """A result exists and the overwrite policy forbids replacing it."""


class CacheError(HemabenchError, RuntimeError):
    """A feature cache entry whose files do not match its checksums (edited, truncated or flipped on disk)."""


class DiskFullError(HemabenchError, OSError):
    """No space left where hemabench writes (cache, results, weights): the message names the folder and the
    space needed."""

    def __str__(self) -> str:  # OSError would prefix "[Errno ...]" when given two arguments
        return str(self.args[0]) if self.args else ""


class TrainError(HemabenchError, RuntimeError):
    """Bad training input: no images, fewer images than a batch, a checkpoint of another architecture."""
