"""Keep OAuth secrets out of runserver's access log."""

from __future__ import annotations

import logging
import re

_SECRET_PARAMS = re.compile(r"([?&](?:code|state|token|refresh_token|client_secret)=)[^&\s\"]*")


def redact(text: str) -> str:
    return _SECRET_PARAMS.sub(r"\1[redacted]", text)


class RedactQuerySecrets(logging.Filter):
    """Masks ``code=``, ``state=`` and the like in a request line (``django.server``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True
