# Shared Python set-up for the project's scripts: sourced, never run.
# - Creates one virtual environment outside the clone (like the cargo target dir), at
#   $FEATSTORE_VENV (default $HOME/.cache/featstore-venv), so a fresh clone on the same
#   machine reuses it.
# - Installs tools/python-requirements.txt (pinned) into it, again only when that file
#   or the clone's path changed since the last install (a checksum is kept inside the
#   venv): the requirements install this clone's Python client in editable mode, so
#   another clone must install its own.
# After sourcing, $FEATSTORE_PY is the venv's python.
export FEATSTORE_VENV="${FEATSTORE_VENV:-$HOME/.cache/featstore-venv}"
FEATSTORE_PY="$FEATSTORE_VENV/bin/python"
export FEATSTORE_PY

featstore_requirements_sum() {
    { pwd; cat tools/python-requirements.txt clients/python/pyproject.toml 2>/dev/null; } | sha256sum | cut -d' ' -f1
}

if [ ! -x "$FEATSTORE_PY" ]; then
    echo "featstore: creating the Python environment in $FEATSTORE_VENV" >&2
    python3 -m venv "$FEATSTORE_VENV"
fi
if [ "$(cat "$FEATSTORE_VENV/.requirements.sha256" 2>/dev/null)" != "$(featstore_requirements_sum)" ]; then
    echo "featstore: installing Python test requirements into $FEATSTORE_VENV" >&2
    "$FEATSTORE_PY" -m pip install -q --disable-pip-version-check -r tools/python-requirements.txt
    featstore_requirements_sum >"$FEATSTORE_VENV/.requirements.sha256"
fi
