#!/usr/bin/env bash
# Builds the Vulkan layer VK_LAYER_SBGC_dawn_limits (scripts/dawn-limits-layer.c) into .vulkan-layer/; idempotent,
# run by scripts/setup.sh once Dawn finds an adapter.
# Why: at every start on lavapipe Dawn prints two lines on stderr,
#   Warning: maxDynamic{Uniform,Storage}BuffersPerPipelineLayout artificially reduced from 1000000 to 16 …
# because lavapipe reports 1000000 dynamic buffers per descriptor set and Dawn clamps them to its maximum, 16, with
# no way to turn the message off. The layer reports 16 for those two Vulkan limits, so Dawn clamps and prints
# nothing; engine/dawn-limits-layer.ts enables it for sbgc's processes only.
# Optional: where the layer cannot be built (no C compiler or Vulkan headers, and no root to install them) or fails
# its check, this says so and exits 0, and Dawn runs as before, warnings included.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "[setup] $*" >&2; }

src=scripts/dawn-limits-layer.c
self=scripts/build-dawn-limits-layer.sh
dir=.vulkan-layer
lib=libVkLayer_sbgc_dawn_limits.so
manifest=VkLayer_sbgc_dawn_limits.json
layer=VK_LAYER_SBGC_dawn_limits

[ "$(uname -s)" = Linux ] || exit 0
if [ -f "$dir/$manifest" ] && [ "$dir/$lib" -nt "$src" ] && [ "$dir/$lib" -nt "$self" ]; then
  exit 0
fi

have_toolchain() {
  command -v cc >/dev/null 2>&1 && echo '#include <vulkan/vk_layer.h>' | cc -E -x c - >/dev/null 2>&1
}

if ! have_toolchain; then
  packages=(gcc libc6-dev libvulkan-dev)
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing a C compiler and the Vulkan headers for the layer that silences Dawn's limit warnings: ${packages[*]}"
    # libvulkan-dev must match libvulkan1's version, which on bookworm may come from backports.
    release=()
    if grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then release=(-t bookworm-backports); fi
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${release[@]}" "${packages[@]}"; } >&2 ||
      log "could not install ${packages[*]}"
  fi
fi
if ! have_toolchain; then
  log "not building the Vulkan layer that silences Dawn's two 'artificially reduced' warnings (harmless): it needs"
  log "a C compiler and the Vulkan headers (Debian/Ubuntu: apt-get install gcc libc6-dev libvulkan-dev); then re-run."
  exit 0
fi

mkdir -p "$dir"
build=$(mktemp -d "$dir/build.XXXXXX")
trap 'rm -rf "$build"' EXIT
cc -shared -fPIC -O2 -fvisibility=hidden -Wall -Wextra -o "$build/$lib" "$src" -lpthread
cat > "$build/$manifest" <<EOF
{
  "file_format_version": "1.1.2",
  "layer": {
    "name": "$layer",
    "type": "GLOBAL",
    "library_path": "./$lib",
    "api_version": "1.4.0",
    "implementation_version": "1",
    "description": "sbgc: reports Dawn's maximum (16) for maxDescriptorSet{Uniform,Storage}BuffersDynamic (built by scripts/setup.sh)"
  }
}
EOF

# Check the layer before installing it: Dawn must still find an adapter and create a device through it.
probe_stderr=$(
  env -u VK_LAYER_PATH VK_ADD_LAYER_PATH="$PWD/$build" VK_INSTANCE_LAYERS="$layer" node --input-type=module -e '
    import { create, globals } from "webgpu";
    Object.assign(globalThis, globals);
    const adapter = await create([]).requestAdapter();
    if (!adapter) process.exit(3);
    (await adapter.requestDevice()).destroy();
    process.exit(0);
  ' 2>&1 >/dev/null
) || {
  log "the Vulkan layer broke Dawn's adapter probe, so it is not installed; Dawn will print its two limit warnings:"
  log "$probe_stderr"
  exit 0
}
mv -f "$build/$lib" "$dir/$lib"
mv -f "$build/$manifest" "$dir/$manifest" # last: engine/dawn-limits-layer.ts enables the layer once this exists
if [[ "$probe_stderr" == *"artificially reduced"* ]]; then
  log "built the Vulkan layer in $dir/, but Dawn still prints its limit warnings (is the Vulkan loader older than"
  log "1.3.208, without VK_ADD_LAYER_PATH?)"
else
  log "built the Vulkan layer that silences Dawn's limit warnings: $dir/"
fi
