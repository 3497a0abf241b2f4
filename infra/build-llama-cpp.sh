#!/usr/bin/env bash
# Builds llama.cpp's llama-server and llama-quantize once (5-8 minutes on 2 cores) for the engine's
# `runtime: llamacpp`, and links the result into a venv as <venv>/llama.cpp.
#
# Source: the llama.cpp tree vendored in the MIT sdist `llama-cpp-python` on PyPI (the only registry that
# ships it here; its prebuilt wheels and llama.cpp's releases live on hosts we cannot reach). The build is
# cached per machine under ${ENTROPO_CACHE:-~/.cache/entropo}, keyed by the version and this CPU's flags
# (GGML_NATIVE compiles for the CPU it runs on), so every checkout and every CI run on the machine reuses it.
# Beside the binaries it keeps llama.cpp's convert_lora_to_gguf.py (adapter conversion) and its gguf-py.
set -euo pipefail
VENV=$(cd "${1:?usage: infra/build-llama-cpp.sh VENV}" && pwd)
VERSION=0.3.36
CACHE=${ENTROPO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/entropo}
CPU=$(grep -m1 '^flags' /proc/cpuinfo | sha256sum | cut -c1-12)
DEST=$CACHE/llama.cpp-$VERSION-$(uname -m)-$CPU

if [ ! -x "$DEST/bin/llama-server" ]; then
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
  echo "[llama.cpp] downloading the llama-cpp-python $VERSION sdist" >&2
  "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -d "$WORK"
  tar xzf "$WORK/llama_cpp_python-$VERSION.tar.gz" -C "$WORK"
  SRC=$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp
  echo "[llama.cpp] building llama-server and llama-quantize into $DEST (once per machine, 5-8 min on 2 cores)" >&2
  # Static, CPU only, no web UI (its prebuilt assets come from a hub), no HTTPS client.
  cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF > "$WORK/cmake.log" 2>&1 || { tail -30 "$WORK/cmake.log" >&2; exit 1; }
  cmake --build "$WORK/build" -j "$(nproc)" --target llama-server llama-quantize > "$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log" >&2; exit 1; }
  rm -rf "$DEST.tmp" && mkdir -p "$DEST.tmp/bin"
  cp "$WORK/build/bin/llama-server" "$WORK/build/bin/llama-quantize" "$DEST.tmp/bin/"
  cp -r "$SRC/convert_lora_to_gguf.py" "$SRC/convert_hf_to_gguf.py" "$SRC/gguf-py" "$SRC/conversion" "$SRC/LICENSE" "$DEST.tmp/"
  echo "llama-cpp-python $VERSION (vendor/llama.cpp)" > "$DEST.tmp/SOURCE"
  mv "$DEST.tmp" "$DEST"  # atomic: a half-built runtime is never picked up
fi
ln -sfn "$DEST" "$VENV/llama.cpp"
