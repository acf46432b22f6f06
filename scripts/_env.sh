# Sourced by the scripts: creates the environment from the lock file (uv.lock) and sets quiet defaults.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
UV_VERSION="0.13.8"
if ! python3 -m uv --version 2>/dev/null | grep -q "uv ${UV_VERSION}"; then
  echo "installing uv ${UV_VERSION} (the package manager that reads uv.lock)"
  python3 -m pip install --quiet --disable-pip-version-check "uv==${UV_VERSION}"
fi
uv() { python3 -m uv "$@"; }
# --compile-bytecode: every process (tests, bentoml serve, prefect server, the batch drift check) then imports from
# compiled bytecode even where PYTHONDONTWRITEBYTECODE is set; importing Evidently, Prefect and BentoML took 13.2 s
# without it and 6.6 s with it, for about 30 s of compiling once at install.
uv sync --frozen --all-extras --quiet --compile-bytecode
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export BENTOML_DO_NOT_TRACK=true
export DO_NOT_TRACK=1
