"""The exception hierarchy: every failure a user can cause is an Ann2SnnError subclass.

The CLI maps each class to its own exit code (see ``EXIT_CODES``) and prints one line, no traceback.
"""

from __future__ import annotations


class Ann2SnnError(Exception):
    """Base class of every error ann2snn raises on purpose."""

    exit_code = 1


class InvalidModelError(Ann2SnnError):
    """The model file or graph is malformed (truncated, garbage, inconsistent shapes, unsafe paths)."""

    exit_code = 3


class UnsupportedModelError(Ann2SnnError):
    """The model is valid but uses ops or attributes ann2snn cannot convert.

    ``problems`` lists every (op_type, node_name, reason) found, so a user sees all of them at once.
    """

    exit_code = 4

    def __init__(self, problems: list[tuple[str, str, str]], context: str = ""):
        self.problems = list(problems)
        head = f"{len(self.problems)} unsupported node(s)" + (f" in {context}" if context else "")
        lines = [f"  {op} node '{name}': {reason}" for op, name, reason in self.problems]
        super().__init__(head + ":\n" + "\n".join(lines))


class DataError(Ann2SnnError):
    """Calibration or evaluation data is missing, malformed, or does not match the model."""

    exit_code = 5


class BackendConstraintError(Ann2SnnError):
    """A converted network violates the limits of a backend (Loihi, NIR).

    ``violations`` lists every (layer, problem, way_out) found.
    """

    exit_code = 6

    def __init__(self, violations: list[tuple[str, str, str]], backend: str):
        self.violations = list(violations)
        lines = [
            f"  layer '{layer}': {problem}" + (f" (way out: {fix})" if fix else "")
            for layer, problem, fix in self.violations
        ]
        super().__init__(f"{len(self.violations)} {backend} constraint violation(s):\n" + "\n".join(lines))


class DistributedRunError(Ann2SnnError):
    """A distributed run cannot go on: a rank died or stopped answering, or the process group failed.

    What the checkpoint (if any) holds is kept; the same command resumes from it.
    """

    exit_code = 8


class CalibrationConfigError(Ann2SnnError, ValueError):
    """An invalid calibration option (threshold method string, granularity, timesteps...): a usage error.

    Also a ValueError, as for any bad argument value to a library function.
    """

    exit_code = 2


class CheckpointMismatchError(DataError):
    """A checkpoint folder belongs to another run (other arguments, model or data): it is never mixed in."""


EXIT_CODES = {
    "Ann2SnnError": Ann2SnnError.exit_code,
    "InvalidModelError": InvalidModelError.exit_code,
    "UnsupportedModelError": UnsupportedModelError.exit_code,
    "DataError": DataError.exit_code,
    "BackendConstraintError": BackendConstraintError.exit_code,
    "DistributedRunError": DistributedRunError.exit_code,
    "CalibrationConfigError": CalibrationConfigError.exit_code,
}
