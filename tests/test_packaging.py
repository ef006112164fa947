"""What ships: package data, metadata, and the tox matrix agree with each other.

The fast tests read setup.cfg and tox.ini; the slow one builds the sdist and the wheel
(the wheel from the sdist, as ``python -m build`` does) and looks inside both.
"""

from __future__ import annotations

import configparser
import fnmatch
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import hubspot_connect

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hubspot_connect"
SUPPORTED_DJANGO = {"4.2", "5.2", "6.0"}
SUPPORTED_PYTHON = {"3.10", "3.11", "3.12", "3.13"}

pytestmark = pytest.mark.skipif(
    not (ROOT / "setup.cfg").exists() or not (ROOT / "tox.ini").exists(),
    reason="needs the source tree (setup.cfg, tox.ini)",
)


def setup_cfg() -> configparser.ConfigParser:
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "setup.cfg")
    return config


def lines(value: str) -> list[str]:
    return [line.strip() for line in value.strip().splitlines() if line.strip()]


def classifiers(prefix: str) -> set[str]:
    found = lines(setup_cfg()["metadata"]["classifiers"])
    return {
        c.removeprefix(prefix) for c in found if re.fullmatch(re.escape(prefix) + r"\d+\.\d+", c)
    }


def tox_envs() -> list[tuple[str, str]]:
    """(python, django) of every env in tox.ini's env_list, e.g. ("3.10", "4.2")."""
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "tox.ini")
    envs: list[tuple[str, str]] = []
    for entry in lines(config["tox"]["env_list"]):
        match = re.fullmatch(r"py\{([\d,]+)\}-django(\d+)|py(\d+)-django(\d+)", entry)
        assert match, f"unexpected tox env {entry!r}"
        pythons = (match.group(1) or match.group(3)).split(",")
        django = match.group(2) or match.group(4)
        envs += [(f"{py[0]}.{py[1:]}", f"{django[0]}.{django[1:]}") for py in pythons]
    return envs


def test_classifiers_name_every_supported_version() -> None:
    assert classifiers("Framework :: Django :: ") == SUPPORTED_DJANGO
    assert classifiers("Programming Language :: Python :: ") == SUPPORTED_PYTHON


def test_tox_matrix_covers_the_classifiers() -> None:
    envs = tox_envs()
    assert {django for _, django in envs} == SUPPORTED_DJANGO
    assert {python for python, _ in envs} == SUPPORTED_PYTHON
    requires = setup_cfg()["options"]["python_requires"].strip()
    assert requires == ">=" + min(SUPPORTED_PYTHON, key=lambda v: tuple(map(int, v.split("."))))


def test_extras() -> None:
    extras = setup_cfg()["options.extras_require"]
    assert set(extras) >= {"testing", "celery"}
    assert "responses" in extras["testing"]
    assert "celery" in extras["celery"]


def test_version_is_pep440() -> None:
    assert re.fullmatch(
        r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?", hubspot_connect.__version__
    )


def test_package_data_patterns_cover_every_data_file() -> None:
    patterns = lines(setup_cfg()["options.package_data"]["hubspot_connect"])
    data = [
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file()
        and path.suffix not in (".py", ".pyc")
        and "__pycache__" not in path.parts
    ]
    assert "py.typed" in data
    missed = [
        name
        for name in data
        if not any(fnmatch.fnmatch(name, pattern.replace("**/", "*")) for pattern in patterns)
    ]
    assert not missed, f"files not in [options.package_data]: {missed}"


def expected_files() -> set[str]:
    """Every file of the package that must ship, relative to the repository root."""
    return {
        path.relative_to(ROOT).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file() and path.suffix != ".pyc" and "__pycache__" not in path.parts
    }


@pytest.mark.slow
def test_sdist_and_wheel_contents(tmp_path: Path) -> None:
    pytest.importorskip("build")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (sdist,) = tmp_path.glob("*.tar.gz")
    (wheel,) = tmp_path.glob("*.whl")

    with tarfile.open(sdist) as archive:
        top = archive.getnames()[0].split("/")[0]
        in_sdist = {name.removeprefix(top + "/") for name in archive.getnames()}
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = set(archive.namelist())
        metadata = archive.read(
            next(name for name in in_wheel if name.endswith(".dist-info/METADATA"))
        ).decode()

    expected = expected_files()
    assert {
        "hubspot_connect/py.typed",
        "hubspot_connect/migrations/0001_initial.py",
        "hubspot_connect/templates/hubspot_connect/base.html",
    } <= expected
    assert not expected - in_sdist, f"missing from the sdist: {sorted(expected - in_sdist)}"
    assert not expected - in_wheel, f"missing from the wheel: {sorted(expected - in_wheel)}"
    assert {"LICENSE", "README.rst", "CHANGELOG.rst"} <= in_sdist
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in in_wheel)
    assert not [name for name in in_wheel if name.startswith(("tests/", "example_project/"))]

    assert "Provides-Extra: testing" in metadata
    assert "Provides-Extra: celery" in metadata
    assert "Requires-Python: >=3.10" in metadata
    for django in SUPPORTED_DJANGO:
        assert f"Classifier: Framework :: Django :: {django}" in metadata
    assert "hubspot_connect = hubspot_connect.testing.pytest_plugin" in archive_entry_points(wheel)

    twine = Path(sys.executable).with_name("twine")
    if twine.exists():
        check = subprocess.run(
            [str(twine), "check", "--strict", str(sdist), str(wheel)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert check.returncode == 0, check.stdout + check.stderr


def archive_entry_points(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt"))
        return archive.read(name).decode()
