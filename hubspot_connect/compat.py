"""What differs between the Django versions the app supports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

View = TypeVar("View", bound=Callable[..., Any])

try:
    from django.contrib.auth.decorators import login_not_required
except ImportError:  # pragma: no cover - Django < 5.1 (the tox matrix runs it)
    # Django < 5.1 has no LoginRequiredMiddleware to opt out of.
    def login_not_required(view_func: View) -> View:
        return view_func


__all__ = ["login_not_required"]
