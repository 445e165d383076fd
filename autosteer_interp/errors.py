"""Exception types raised by autosteer_interp.

Every error says what was wrong, what was received and what is allowed. All of them derive from
:class:`AutosteerError`, so ``except AutosteerError`` catches everything this package raises on purpose.
"""

from jaxtyping import AnnotationError

__all__ = [
    "ArtifactError",
    "AutosteerError",
    "FitError",
    "DataFormatError",
    "InvalidInputError",
    "LayerIndexError",
    "ModelLoadError",
    "TypeContractError",
    "UnsupportedModelError",
]


class AutosteerError(Exception):
    """Base class of every error raised on purpose by autosteer_interp."""


class InvalidInputError(AutosteerError, ValueError):
    """An argument has the wrong shape, type or value (e.g. mismatched activation stacks)."""


class UnsupportedModelError(AutosteerError):
    """The model's architecture (or the requested backend for it) is not supported."""


class LayerIndexError(AutosteerError, IndexError):
    """A decoder-layer index is outside ``0 <= layer < n_layers``."""


class DataFormatError(AutosteerError, ValueError):
    """A data file is missing or malformed; the message names the file and the line."""


class ModelLoadError(AutosteerError):
    """A model could not be loaded (missing package, no hub access, unknown name)."""


class FitError(AutosteerError):
    """Training went wrong in a way the inputs did not show (e.g. a loss that is not finite)."""


class ArtifactError(AutosteerError):
    """A saved artefact is missing, malformed, tampered with or does not match the model."""


class TypeContractError(InvalidInputError, AnnotationError):
    """An argument broke a function's annotation (its type, or its jaxtyping shape and dtype).

    Raised by a runtime type checker, never by the package's own code: the test suite runs beartype under
    jaxtyping's import hook with ``violation_type=TypeContractError`` (see ``pyproject.toml``), so that a wrong
    argument is an :class:`InvalidInputError` there too, as it is without the checker (where the functions' own
    checks raise it). Deriving from jaxtyping's ``AnnotationError`` lets it through jaxtyping's wrapper unchanged.
    """
