"""phonekit's exceptions. A failed check is a verdict, not an exception; these mean something else::

    PhonekitError                 base of everything phonekit raises on purpose
    ├── UsageError                bad input: a file, row, field or option (exit 2)
    └── MeasurementError          could not measure: no device, no server, no permission (exit 3)

Every message names what, where and the bad value, e.g.
``inventory.csv row 14: field 'extension' must be digits (got '10a2')``.
"""

from __future__ import annotations

__all__ = ["MeasurementError", "PhonekitError", "UsageError"]


class PhonekitError(Exception):
    """Base of every error phonekit raises on purpose."""


class UsageError(PhonekitError):
    """The user's input is wrong; the message says where and how."""


class MeasurementError(PhonekitError):
    """A check could not measure; ``remedy`` says what would let it."""

    def __init__(self, message: str, remedy: str = "check that the device or service is present and try again") -> None:
        super().__init__(message)
        self.remedy = remedy
