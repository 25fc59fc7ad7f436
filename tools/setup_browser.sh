#!/usr/bin/env bash
# Headless Chromium and its WebDriver from Debian's packages, for the run-report browser test.
# Idempotent; never fails the caller: where the packages cannot be installed (no apt, no root,
# no network) it says why and the report test skips with that reason.
set -uo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo"; else
    echo "[setup] chromium/chromedriver missing and no root: the run-report browser test will be skipped" >&2; exit 0
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "[setup] chromium/chromedriver missing and no apt-get: the run-report browser test will be skipped" >&2; exit 0
fi
printf '[setup %s] installing Debian packages chromium chromium-driver (the run-report browser test)\n' "$(date +%H:%M:%S)"
if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; }; then
  echo "[setup] could not install chromium chromium-driver: the run-report browser test will be skipped" >&2
fi
exit 0
