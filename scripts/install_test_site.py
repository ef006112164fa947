"""Apply README.rst's "Installation" section to a new ``startproject`` site, then use it.

Run by ``scripts/ci_install_test.sh`` with the stranger's virtualenv's Python (standard
library only, plus the package under test). It reads the section in document order and
does what a person would:

* a ``python`` block that mentions ``urlpatterns`` is appended to ``<project>/urls.py``,
  every other ``python`` block to ``<project>/settings.py``;
* a literal (``::``) or shell block is run line by line in the site (``pip install
  django-hubspot-connect`` is checked for the right name and skipped: the wheel is in);
* an inline command that makes the encryption key (``generate_encryption_key`` or
  ``Fernet.generate_key``) is run where the text names it, without a key in the
  environment, and its output becomes ``FIELD_ENCRYPTION_KEY``;
* an ``html+django`` block is kept and rendered in the site at the end.

Other environment variables the settings read (``os.environ["..."]``) get test values.
Then: ``manage.py check`` (no unexpected messages), the connect flow and the refresh
command against FakeHubSpot (``install_test_flow.py``), ``manage.py
refresh_hubspot_tokens`` as a real process, and, with ``--doc-tests docs/testing.rst``,
the python blocks of that page that define tests ("Testing your own code with
FakeHubSpot"), as the site's own pytest tests. A missing or wrong step in the README or
that page makes one of these fail.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

DISTRIBUTION = "django-hubspot-connect"
HERE = Path(__file__).resolve().parent
KEY = "FIELD_ENCRYPTION_KEY"
# Values for the environment variables the README's settings may read (the key is made
# with the README's own command).
ENV_VALUES = {
    "HUBSPOT_CLIENT_ID": "stranger-client-id",
    "HUBSPOT_CLIENT_SECRET": "stranger-secret-" + secrets.token_hex(8),
}
SHELL_LANGUAGES = {"", "console", "shell", "bash", "sh", "shell-session", "text"}
TEMPLATE_LANGUAGES = {"html+django", "django", "html+jinja", "html"}
KEY_COMMAND = re.compile(
    r"``((?:python3?|django-admin) [^`]*(?:encryption_key|generate_key)[^`]*)``"
)


class StepFailed(Exception):
    pass


def step(title: str) -> None:
    print(f"\n--- [install test] {title} ---", flush=True)


@dataclass
class Block:
    language: str  # "python", "html+django", "" for a literal block, "key-command", ...
    text: str
    line: int  # line of the file (README.rst, a docs page) where the block's content starts


def section(readme: str, title: str) -> tuple[list[str], int]:
    """The lines of a top-level section (title underlined with '='), and its first line."""
    lines = readme.splitlines()

    def is_title(index: int) -> bool:
        text, under = lines[index].strip(), lines[index + 1].strip()
        return (
            bool(text)
            and not lines[index].startswith(" ")
            and (re.fullmatch(r"=+", under) is not None and len(under) >= len(text))
        )

    for index in range(len(lines) - 1):
        if lines[index].strip() == title and is_title(index):
            start = index + 2
            end = next((i for i in range(start, len(lines) - 1) if is_title(i)), len(lines))
            return lines[start:end], start + 1
    raise StepFailed(f"README.rst has no {title!r} section.")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _indented_block(lines: list[str], start: int, parent_indent: int) -> tuple[str, int, int]:
    """The text indented deeper than ``parent_indent`` from ``start`` on, without options."""
    index = start
    while index < len(lines) and (
        not lines[index].strip()
        or (_indent(lines[index]) > parent_indent and lines[index].strip().startswith(":"))
    ):
        index += 1
    first = index
    while index < len(lines) and (
        not lines[index].strip() or _indent(lines[index]) > parent_indent
    ):
        index += 1
    body = lines[first:index]
    while body and not body[-1].strip():
        body.pop()
    if not body:
        return "", first, index
    cut = min(_indent(line) for line in body if line.strip())
    return "\n".join(line[cut:] for line in body) + "\n", first, index


def blocks_of(lines: list[str], first_line: int) -> list[Block]:
    """Code blocks and inline key commands, in document order."""
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        directive = re.match(r"\s*\.\. (?:code-block|code|sourcecode)::\s*(\S*)\s*$", line)
        if directive:
            text, first, index = _indented_block(lines, index + 1, _indent(line))
            blocks.append(Block(directive.group(1).lower(), text, first_line + first))
            continue
        # Inline literals may wrap: look at this line joined with the next one.
        joined = line + " " + (lines[index + 1].strip() if index + 1 < len(lines) else "")
        for match in KEY_COMMAND.finditer(joined):
            if match.start() < len(line):
                blocks.append(Block("key-command", match.group(1), first_line + index))
        if line.rstrip().endswith("::") and not line.strip().startswith(".."):
            text, first, end = _indented_block(lines, index + 1, _indent(line))
            if text:
                blocks.append(Block("", text, first_line + first))
                index = end
                continue
        index += 1
    return blocks


def environment_names(python: str) -> list[str]:
    pattern = r"""os\.environ(?:\.get)?[\[(]\s*["'](\w+)["']|os\.getenv\(\s*["'](\w+)"""
    return sorted({a or b for a, b in re.findall(pattern, python)})


def run(command: list[str], cwd: Path, env: dict[str, str], *, echo: bool = True) -> str:
    print("$ " + shlex.join(command), flush=True)
    result = subprocess.run(command, cwd=cwd, env=env, text=True, capture_output=True)
    stderr = re.sub(r"(?m)^WARNING: Location 'file:.*\n", "", result.stderr)
    output = result.stdout + stderr
    if echo and output:
        print(output, end="" if output.endswith("\n") else "\n", flush=True)
    if result.returncode != 0:
        if not echo:
            print(output, end="", flush=True)
        raise StepFailed(f"`{shlex.join(command)}` exited with status {result.returncode}.")
    return result.stdout if not echo else output


def shell_command(line: str, python: str) -> list[str] | None:
    """The command a README line stands for, or None when there is nothing to run."""
    line = re.sub(r"^\s*\$\s+", "", line).split(" #", 1)[0].strip()
    if not line or line.startswith("#"):
        return None
    words = shlex.split(line)
    pip_words = 2 if words[:2] == ["pip", "install"] else 0
    if words[:4] in (["python", "-m", "pip", "install"], ["python3", "-m", "pip", "install"]):
        pip_words = 4
    if pip_words:
        packages = [word for word in words[pip_words:] if not word.startswith("-")]
        ours = [p for p in packages if re.split(r"[\[<>=!~;]", p)[0].lower() == DISTRIBUTION]
        if not ours:
            raise StepFailed(f"The README installs {packages}, not {DISTRIBUTION}.")
        others = [p for p in packages if p not in ours]
        if others:
            return [python, "-m", "pip", "install", "--quiet", *others]
        print(f"(skipped `{line}`: the wheel under test is installed instead)")
        return None
    if words[0] in ("python", "python3"):
        return [python, *words[1:]]
    return words


def install(readme: str, site: Path, project: str, env: dict[str, str]) -> list[Block]:
    """Apply the Installation section; returns the template snippets to render later."""
    python = sys.executable
    settings_py, urls_py = site / project / "settings.py", site / project / "urls.py"
    step("README.rst: the Installation section")
    lines, first_line = section(readme, "Installation")
    blocks = blocks_of(lines, first_line)
    print(f"{len(blocks)} steps found in README.rst lines {first_line}-{first_line + len(lines)}")
    if not any(block.language == "python" for block in blocks):
        raise StepFailed("The Installation section has no `.. code-block:: python` block.")
    templates: list[Block] = []
    for block in blocks:
        where = f"README.rst line {block.line}"
        if block.language == "python":
            target = urls_py if "urlpatterns" in block.text else settings_py
            step(f"{where}: append a python block to {target.relative_to(site)}")
            print(block.text, end="")
            for name in environment_names(block.text):
                if name == KEY:
                    continue  # made by the README's own key command
                if name not in ENV_VALUES:
                    raise StepFailed(
                        f"{where} reads the environment variable {name}, which this test "
                        "cannot set; add it to ENV_VALUES in scripts/install_test_site.py."
                    )
                env[name] = ENV_VALUES[name]
                print(f"(environment: {name} set)")
            with target.open("a") as handle:
                handle.write(f"\n\n# --- from {where} ---\n{block.text}")
            compile(target.read_text(), str(target), "exec")
        elif block.language == "key-command":
            step(f"{where}: make the encryption key as the README says")
            without_key = {name: value for name, value in env.items() if name != KEY}
            command = shell_command(block.text, python)
            if command is None:
                raise StepFailed(f"{where}: nothing to run in {block.text!r}.")
            output = run(command, site, without_key, echo=False).strip()
            candidate = output.splitlines()[-1].strip() if output else ""
            from cryptography.fernet import Fernet  # a dependency of the package

            try:
                Fernet(candidate)
            except (ValueError, TypeError):
                raise StepFailed(f"{where}: `{block.text}` printed no Fernet key.") from None
            env[KEY] = candidate
            print(f"(a key of {len(candidate)} characters; environment: {KEY} set)")
        elif block.language in TEMPLATE_LANGUAGES:
            step(f"{where}: keep a template snippet to render later")
            print(block.text, end="")
            templates.append(block)
        elif block.language in SHELL_LANGUAGES:
            step(f"{where}: run the commands shown")
            if KEY in settings_py.read_text() and KEY not in env:
                raise StepFailed(
                    f"{where}: the settings need {KEY} by now, and the Installation section "
                    "has not said how to make one (an inline ``python ...`` command)."
                )
            for line in block.text.splitlines():
                command = shell_command(line, python)
                if command is not None:
                    run(command, site, env)
        else:
            print(f"({where}: a {block.language} block, not applied)")
    return templates


def doc_tests(page: Path, site: Path, project: str, env: dict[str, str]) -> None:
    """Run the python blocks of ``page`` that define tests (pytest functions or Django
    ``TestCase`` classes), as the site's own pytest tests."""
    step(f"{page.name}: its test examples, as the site's own pytest tests")
    lines = page.read_text().splitlines()
    code = [
        block
        for block in blocks_of(lines, 1)
        if block.language == "python"
        and re.search(r"^(def test_|class \w+\(TestCase\))", block.text, re.MULTILINE)
    ]
    if not code:
        raise StepFailed(f"{page} has no python block with a test.")
    print(f"{len(code)} blocks with tests, at {page.name} lines {[b.line for b in code]}")
    run([sys.executable, "-m", "pip", "install", "--quiet", "pytest", "pytest-django"], site, env)
    test_file = site / "test_doc_examples.py"
    test_file.write_text("\n\n".join(block.text for block in code))
    (site / "pytest.ini").write_text(
        f"[pytest]\nDJANGO_SETTINGS_MODULE = {project}.settings\n"
        "filterwarnings =\n    error::DeprecationWarning\n"
    )
    output = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], site, env)
    if not re.search(r"\b\d+ passed\b", output) or re.search(r"\b(failed|error)", output):
        raise StepFailed(f"The test examples of {page} did not pass.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, required=True)
    parser.add_argument("--site", type=Path, required=True)
    parser.add_argument("--project", default="mysite")
    parser.add_argument(
        "--allow-check-id",
        action="append",
        default=[],
        help="A system check id `manage.py check` may report (repeatable).",
    )
    parser.add_argument(
        "--doc-tests",
        type=Path,
        metavar="PAGE",
        help="Also run the test examples of this page (docs/testing.rst) with pytest "
        "(installs pytest).",
    )
    args = parser.parse_args()
    site: Path = args.site.resolve()
    python = sys.executable
    readme = args.readme.read_text()

    env = dict(os.environ)
    for name in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH", KEY, *ENV_VALUES):
        env.pop(name, None)
    env["PATH"] = str(Path(python).parent) + os.pathsep + env.get("PATH", "")

    templates = install(readme, site, args.project, env)

    step("manage.py check")
    output = run([python, "manage.py", "check"], site, env)
    ids = re.findall(r"\(([\w.]+\.[A-Z]\d{3})\)", output)
    unexpected = sorted(set(ids) - set(args.allow_check_id))
    if unexpected:
        raise StepFailed(f"`manage.py check` reported {', '.join(unexpected)}.")
    if "System check identified no issues" not in output and not ids:
        raise StepFailed("`manage.py check` did not say it found no issues.")

    step("manage.py showmigrations hubspot_connect (all applied)")
    output = run([python, "manage.py", "showmigrations", "hubspot_connect"], site, env)
    if "[X] 0001_initial" not in output or "[ ]" in output:
        raise StepFailed("hubspot_connect's migrations are missing or not all applied.")

    step("the connect flow and refresh_hubspot_tokens --force against FakeHubSpot")
    command = [python, str(HERE / "install_test_flow.py")]
    for block in templates:
        snippet = site / f"readme_snippet_{block.line}.html"
        snippet.write_text(block.text)
        command.append(f"--template={snippet}")
    flow_env = dict(env, DJANGO_SETTINGS_MODULE=f"{args.project}.settings", PYTHONPATH=str(site))
    run(command, site, flow_env)

    step("manage.py refresh_hubspot_tokens, as cron runs it (nothing due: no HTTP)")
    output = run([python, "manage.py", "refresh_hubspot_tokens"], site, env)
    if not re.search(r"refreshed 0\b.*failed 0\b", output):
        raise StepFailed(f"Unexpected summary from refresh_hubspot_tokens: {output!r}")

    if args.doc_tests:
        doc_tests(args.doc_tests.resolve(), site, args.project, env)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except StepFailed as exc:
        print(f"\n*** {exc}", file=sys.stderr)
        sys.exit(1)
