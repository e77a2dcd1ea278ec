"""One exception hierarchy. Every message names the object, what was expected and how to fix it."""

from __future__ import annotations


class StarError(Exception):
    """Base class of every error STAR raises on purpose."""


class ConfigError(StarError):
    """A setting (environment variable, option) is missing or malformed."""


class DatabaseError(StarError):
    """The database cannot be reached, started or migrated."""


class IngestError(StarError):
    """An input file of `star seed --from DIR` is malformed. Nothing has been written."""

    def __init__(self, *, file: str, problem: str, fix: str, row: int | None = None, line: int | None = None,
                 column: str | None = None):
        where = file
        if row is not None:
            where += f", row {row}" + (f" (line {line})" if line is not None else "")
        if column is not None:
            where += f", column '{column}'"
        super().__init__(f"{where}: {problem}. Fix: {fix}")
        self.file, self.row, self.column, self.problem, self.fix = file, row, column, problem, fix


class FeatureRepoError(StarError):
    """The Feast repository and the data or registry disagree."""


class VersionError(StarError):
    """A vintage (a version of an embedding family) does not exist, disagrees with what a job was asked to write,
    or cannot move to the requested state."""


class TrainsetError(StarError):
    """A training set cannot be built as asked."""


class TextModelError(StarError):
    """A text model, adapter or saved text checkpoint cannot be loaded or saved as asked."""


class TextInputError(StarError):
    """Texts or a pairs frame given to the text model are unusable (empty text, unknown kind, missing column)."""


def require_at_least(owner: str, bound: float, *, strict: bool = False, **values) -> None:
    """ConfigError naming the first of `values` below `bound` (or at it, when strict), its value and the fix, e.g.
    require_at_least("EmbedConfig", 1, batch_size=cfg.batch_size). The option of a setting is --<name with ->."""
    for name, value in values.items():
        if value is None or (value > bound if strict else value >= bound):
            continue
        need = f"> {bound}" if strict else f">= {bound}"
        raise ConfigError(f"{owner}: {name}={value!r} must be {need}; pass --{name.replace('_', '-')} with a "
                          f"value {need}")


class EvalSetError(StarError):
    """An evaluation set (`star text eval`) cannot be built as asked: task, window, column or vintage."""
