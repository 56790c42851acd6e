#!/usr/bin/env bash
# Idempotent set-up used by `npm test`, `npm run demo` and CI:
#   1. installs npm dependencies when missing or stale;
#   2. checks that Dawn finds a WebGPU adapter;
#   3. without one, on Debian/Ubuntu as root, installs Mesa's lavapipe (Vulkan on the CPU) — on Debian bookworm
#      from bookworm-backports, because bookworm's Mesa 22.3 lacks shaderSampledImageArrayDynamicIndexing, which
#      Dawn requires — and otherwise prints the exact command a person must run;
#   4. builds the Vulkan layer that keeps Dawn from printing two limit warnings at every start
#      (scripts/build-dawn-limits-layer.sh; optional, it never fails the set-up).
set -euo pipefail
cd "$(dirname "$0")/.."

export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/xdg-runtime-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR" 2>/dev/null || true

log() { echo "[setup] $*" >&2; }

# --- 1. npm dependencies -------------------------------------------------------------------------------
if ! command -v node >/dev/null 2>&1; then
  log "Node.js is missing. Install Node.js ≥ 20 (e.g. apt-get install nodejs, or from nodejs.org) and re-run."
  exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  log "Node.js $(node --version) is too old; sbgc needs Node.js ≥ 20."
  exit 1
fi
if [ -L node_modules ]; then
  # A checkout sharing another's install (a git worktree): npm ci would empty the link's target, so leave it alone.
  [ -f node_modules/.package-lock.json ] || { log "node_modules links to an incomplete install: $(readlink node_modules)"; exit 1; }
elif [ ! -d node_modules ] || [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund >&2
fi

# --- 2. WebGPU adapter -----------------------------------------------------------------------------------
probe_adapter() {
  node --input-type=module -e '
    import { create, globals } from "webgpu";
    Object.assign(globalThis, globals);
    const gpu = create([]);
    const a = await gpu.requestAdapter();
    if (!a) { process.exit(3); }
    const i = a.info;
    console.log(`${i.vendor} ${i.architecture} ${i.device} ${i.description}`.replace(/\s+/g, " ").trim());
    process.exit(0);
  ' 2>/dev/null
}

# The adapter works: build the layer that silences Dawn's limit warnings (optional) and stop here.
adapter_found() {
  log "WebGPU adapter: $adapter"
  bash scripts/build-dawn-limits-layer.sh || log "building the Vulkan layer failed: Dawn will print its two limit warnings"
  exit 0
}

if adapter=$(probe_adapter); then adapter_found; fi

log "Dawn found no WebGPU adapter."
. /etc/os-release 2>/dev/null || true
os_id="${ID:-unknown}"
codename="${VERSION_CODENAME:-}"

if [ "$os_id" = debian ] && [ "$codename" = bookworm ]; then
  install_cmd='echo "deb http://deb.debian.org/debian bookworm-backports main" > /etc/apt/sources.list.d/bookworm-backports.list && apt-get update && apt-get install -y -t bookworm-backports mesa-vulkan-drivers libvulkan1'
elif [ "$os_id" = debian ] || [ "$os_id" = ubuntu ] || [[ "${ID_LIKE:-}" == *debian* ]]; then
  install_cmd='apt-get update && apt-get install -y mesa-vulkan-drivers libvulkan1'
else
  log "Unsupported OS '$os_id' for automatic set-up. Install a Vulkan driver (Mesa ≥ 23 lavapipe: packages"
  log "mesa-vulkan-drivers and libvulkan1 or your distribution's equivalents), then re-run."
  exit 1
fi

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  log "Not root (or no apt-get): cannot install Mesa lavapipe. A person must run, as root:"
  log "  $install_cmd"
  exit 1
fi

log "installing Mesa lavapipe: $install_cmd"
export DEBIAN_FRONTEND=noninteractive
if [ "$os_id" = debian ] && [ "$codename" = bookworm ]; then
  if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "deb http://deb.debian.org/debian bookworm-backports main" > /etc/apt/sources.list.d/bookworm-backports.list
  fi
  apt-get update -qq >&2
  apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1 >&2
else
  apt-get update -qq >&2
  apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >&2
fi

if adapter=$(probe_adapter); then adapter_found; fi
log "Still no WebGPU adapter after installing lavapipe. Check 'vulkaninfo --summary' (package vulkan-tools);"
log "Dawn needs Mesa ≥ 23 (bookworm's 22.3 is too old)."
exit 1
