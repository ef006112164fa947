"""``make demo``: prepare the example project and start it, safely repeatable.

1. create ``.env`` with a fresh FIELD_ENCRYPTION_KEY and DJANGO_SECRET_KEY if missing;
2. migrate the database (SQLite in ``example_project/var/`` by default);
3. create the ``admin`` superuser with a random password, unless it exists;
4. print the URL and the login, then become ``manage.py runserver``.

Environment: DEMO_HOST (default 127.0.0.1), DEMO_PORT (8000), DEMO_ENV_FILE (the
``.env`` to use), DEMO_NORELOAD=1 (no autoreloader), plus everything settings.py reads.
Each step is a function, so tests can run them without starting a server.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO_DIR = Path(__file__).resolve().parent.parent
ADMIN_USERNAME = "admin"
PASSWORD_KEY = "DEMO_ADMIN_PASSWORD"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def env_file_path(environ: Mapping[str, str] = os.environ) -> Path:
    return Path(environ.get("DEMO_ENV_FILE") or REPO_DIR / ".env")


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of a ``.env`` file (the subset of the format this script writes)."""
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        key = key.strip().removeprefix("export ").strip()
        if sep and key and not key.startswith("#"):
            values[key] = value.strip().strip("'\"")
    return values


def set_env_values(path: Path, updates: Mapping[str, str]) -> None:
    """Set ``KEY=value`` lines in ``path``: replace existing ones, append the rest.

    The file is created readable by its owner only: it holds secrets.
    """
    lines = path.read_text().splitlines() if path.exists() else []
    pending = dict(updates)
    for index, line in enumerate(lines):
        key = line.partition("=")[0].strip().removeprefix("export ").strip()
        if key in pending:
            lines[index] = f"{key}={pending.pop(key)}"
    if not lines:
        lines = ["# Written by `make demo` (example_project/demo.py). Never commit this file."]
    lines += [f"{key}={value}" for key, value in pending.items()]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")


def ensure_env_file(path: Path) -> list[str]:
    """Fill in missing or empty secrets in ``path``; returns the names it generated."""
    from cryptography.fernet import Fernet

    existing = read_env_file(path)
    generated: dict[str, str] = {}
    if not existing.get("FIELD_ENCRYPTION_KEY"):
        generated["FIELD_ENCRYPTION_KEY"] = Fernet.generate_key().decode()
    if not existing.get("DJANGO_SECRET_KEY"):
        generated["DJANGO_SECRET_KEY"] = secrets.token_urlsafe(50)
    if generated:
        set_env_values(path, generated)
    return list(generated)


def setup_django(env_file: Path) -> None:
    os.environ["DEMO_ENV_FILE"] = str(env_file)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    if str(REPO_DIR) not in sys.path:
        sys.path.insert(0, str(REPO_DIR))
    import django

    django.setup()


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)


def ensure_admin(env_file: Path, username: str = ADMIN_USERNAME) -> str | None:
    """Create the demo superuser if missing; return its password if this script knows it.

    The password is random and kept in ``.env`` (git-ignored, mode 0600) so every run can
    print it. A password changed since is left alone: ``None`` is returned.
    """
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    stored = read_env_file(env_file).get(PASSWORD_KEY, "")
    user = user_model.objects.filter(**{user_model.USERNAME_FIELD: username}).first()
    if user is None:
        password = secrets.token_urlsafe(12)
        user_model.objects.create_superuser(username, f"{username}@example.com", password)
        set_env_values(env_file, {PASSWORD_KEY: password})
        return password
    if stored and user.check_password(stored):
        return stored
    return None


def runserver_argv(environ: Mapping[str, str] = os.environ) -> list[str]:
    host = environ.get("DEMO_HOST", "127.0.0.1")
    port = environ.get("DEMO_PORT", "8000")
    address = f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
    argv = [sys.executable, str(REPO_DIR / "manage.py"), "runserver", address]
    if environ.get("DEMO_NORELOAD") == "1":
        argv.append("--noreload")
    return argv


def prepare(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """Every step before the server starts; returns what to tell the user."""
    env_file = env_file_path(environ)
    generated = ensure_env_file(env_file)
    setup_django(env_file)
    migrate()
    password = ensure_admin(env_file)
    from django.conf import settings

    return {
        "env_file": env_file,
        "generated": generated,
        "username": ADMIN_USERNAME,
        "password": password,
        "url": f"{settings.DEMO_URL}/",
        "fake": bool(settings.HUBSPOT_FAKE),
    }


def banner(info: Mapping[str, Any], host: str) -> str:
    lines = [""]
    if info["generated"]:
        names = ", ".join(info["generated"])
        lines.append(f"  Wrote {names} to {info['env_file']} (keep it; never commit it).")
    mode = "the built-in fake HubSpot" if info["fake"] else "real HubSpot (app from .env)"
    lines.append(f"  django-hubspot-connect demo, talking to {mode}")
    lines.append(f"  Open      {info['url']}")
    if info["password"]:
        lines.append(f"  Log in as {info['username']} / {info['password']}")
    else:
        lines.append(
            f"  Log in as {info['username']} with the password you set "
            f"(forgot it? python manage.py changepassword {info['username']})"
        )
    if host not in LOOPBACK:
        lines.append(f"  Listening on {host}: anyone who can reach it sees this demo.")
    lines.append("  Stop with Ctrl+C.")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    os.chdir(REPO_DIR)
    info = prepare()
    argv = runserver_argv()
    print(banner(info, os.environ.get("DEMO_HOST", "127.0.0.1")), flush=True)
    # runserver is threaded by default: the callback's call to the fake token endpoint
    # is served by another thread of the same server while the callback waits.
    os.execv(argv[0], argv)  # noqa: S606


if __name__ == "__main__":
    main()
