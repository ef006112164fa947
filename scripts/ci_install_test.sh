#!/usr/bin/env bash
# Install the built wheel into a stranger's brand-new Django site, following README.rst's
# "Installation" section to the letter, connect a portal against FakeHubSpot, and run the
# test examples of docs/testing.rst as the site's own tests.
#
#   bash scripts/ci_install_test.sh            # what .ci/run calls
#   PYTHON=python3.13 bash scripts/ci_install_test.sh
#   KEEP=1 bash scripts/ci_install_test.sh     # keep the site for a look afterwards
#
# README=path tests another copy of the README (to see that a broken step fails), and
# TESTING_DOC=path another copy of docs/testing.rst, whose test examples run as the site's
# own tests.
# PYTHON picks the stranger's interpreter (default python3); pip then picks the newest
# Django that interpreter supports, as it would for a stranger. DJANGO (e.g. "Django<5")
# pins it instead.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1

STEP="start"
step() {
  STEP="$*"
  printf '\n--- [install test] %s ---\n' "$STEP"
}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/hubspot-install-test.XXXXXX")
finish() {
  local status=$?
  if [ "$status" -ne 0 ]; then
    printf '\n*** install test FAILED at step: %s (exit %s)\n' "$STEP" "$status" >&2
  fi
  if [ "${KEEP:-0}" = 1 ]; then
    printf 'kept %s\n' "$WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$status"
}
trap finish EXIT
# This machine's pip configuration names local indexes that may not exist: not our news.
quiet_pip() { { grep -v "^WARNING: Location 'file:" || true; } >&2; }
START=$SECONDS

step "build the wheel"
BUILD_PY=$ROOT/.venv/bin/python
[ -x "$BUILD_PY" ] || BUILD_PY=${PYTHON:-python3}
"$BUILD_PY" -m build --wheel --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1 \
  || { cat "$WORK/build.log" >&2; exit 1; }
WHEEL=$(ls "$WORK"/dist/*.whl)
echo "built $(basename "$WHEEL")"

step "a fresh virtualenv ($(${PYTHON:-python3} -V 2>&1))"
"${PYTHON:-python3}" -m venv "$WORK/venv"
VENV_PY=$WORK/venv/bin/python

step "pip install the wheel with the [testing] extra${DJANGO:+ and $DJANGO}"
"$VENV_PY" -m pip install --quiet "${WHEEL}[testing]" ${DJANGO:+"$DJANGO"} 2> >(quiet_pip)
"$VENV_PY" -m pip list 2>/dev/null | grep -i -E '^(django|django-hubspot-connect|responses) '

step "django-admin startproject mysite"
mkdir "$WORK/site"
(cd "$WORK/site" && "$WORK/venv/bin/django-admin" startproject mysite .)

# The rest (README steps, check, migrate, the connect flow, the refresh command) runs in
# Python, in the stranger's virtualenv; it prints its own step headings.
STEP="the README's steps and the connect flow (see the last heading above)"
"$VENV_PY" "$ROOT/scripts/install_test_site.py" \
  --readme "${README:-$ROOT/README.rst}" --site "$WORK/site" --project mysite \
  --doc-tests "${TESTING_DOC:-$ROOT/docs/testing.rst}"

printf '\n--- [install test] passed in %ss ---\n' "$((SECONDS - START))"
