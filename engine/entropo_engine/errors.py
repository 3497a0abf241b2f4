"""Errors and the exit codes the TypeScript activity reads (DESIGN.md §1):
0 done, 2 invalid config or data (non-retryable), 3 numerical failure (non-retryable), other retryable."""

EXIT_OK = 0
EXIT_INVALID_INPUT = 2
EXIT_NUMERICAL = 3


class InvalidInputError(Exception):
    """A config or data file is wrong; the message names the file, the line and the field."""

    exit_code = EXIT_INVALID_INPUT


class NumericalError(Exception):
    """The loss or a gradient became NaN/inf; retrying the same job would fail the same way."""

    exit_code = EXIT_NUMERICAL
