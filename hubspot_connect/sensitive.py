"""``Secret``: a string that error reports cannot print.

Tokens, the client secret and authorization codes are held as :class:`Secret` wherever
the app keeps them in a variable: ``repr()`` (what Django's DEBUG page, the admin error
email and error trackers such as Sentry show for a frame's local variables) is redacted,
while the value itself (``str()``, f-strings, ``==``, encoding for the wire) is unchanged.
"""

from __future__ import annotations

REDACTED = "'[redacted]'"


class Secret(str):
    """A ``str`` whose ``repr()`` never shows its value."""

    __slots__ = ()

    def __repr__(self) -> str:
        return REDACTED


def secret(value: str) -> Secret:
    """``value`` as a :class:`Secret` (the same object if it already is one)."""
    return value if isinstance(value, Secret) else Secret(value)
