#!/usr/bin/env bash
# Headless Chromium for the browser check of the Prefect UI (tests/flows/test_prefect_server.py). Prints the
# browser's path. Nothing to do when Chromium is there (FERRY_CHROMIUM, or chromium on PATH); otherwise it is
# installed with apt-get (as root, or with sudo), once. The test runs this script itself, and ./scripts/check too.
set -euo pipefail
if [ -n "${FERRY_CHROMIUM:-}" ] && [ -x "${FERRY_CHROMIUM}" ]; then echo "${FERRY_CHROMIUM}"; exit 0; fi
for name in chromium chromium-browser; do
  if command -v "${name}" >/dev/null 2>&1; then command -v "${name}"; exit 0; fi
done
if ! command -v apt-get >/dev/null 2>&1; then
  echo "no Chromium and no apt-get to install it: install Chromium and set FERRY_CHROMIUM to its path" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "installing chromium with apt-get (once; the browser check of the Prefect UI needs it)" >&2
${sudo} apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive ${sudo} apt-get install -y -qq --no-install-recommends chromium >&2
command -v chromium
