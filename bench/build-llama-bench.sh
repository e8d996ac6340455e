#!/usr/bin/env bash
# Build llama.cpp's llama-bench (and llama-quantize, for the speculation pair) from the sources vendored in the llama-cpp-python sdist of
# the installed version, so the reference figures come from the very llama.cpp chatterm runs.
# Usage: bench/build-llama-bench.sh [PYTHON]   (PYTHON: the interpreter with llama-cpp-python)
# Result: ${XDG_CACHE_HOME:-~/.cache}/chatterm/llama-bench-<version>/bin/llama-bench
set -euo pipefail
python=${1:-python3}
version=$("$python" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')
root=${XDG_CACHE_HOME:-$HOME/.cache}/chatterm/llama-bench-$version
if [ -x "$root/bin/llama-bench" ]; then echo "$root/bin/llama-bench"; exit 0; fi
mkdir -p "$root/src"
if [ ! -d "$root/src/vendor/llama.cpp" ]; then
  "$python" -m pip download --quiet --no-deps --no-binary :all: -d "$root" "llama-cpp-python==$version"
  tar -xzf "$root"/llama_cpp_python-"$version".tar.gz -C "$root/src" --strip-components=1
fi
# Built as llama-cpp-python builds (shared libraries, native ISA): the benchmark runs it
# with LD_LIBRARY_PATH set to llama-cpp-python's own libraries, so llama-bench and
# chatterm execute the very same llama.cpp machine code.
cmake -S "$root/src/vendor/llama.cpp" -B "$root/build" -DCMAKE_BUILD_TYPE=Release \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TESTS=OFF -DBUILD_SHARED_LIBS=ON \
  ${LLAMA_BENCH_CMAKE_ARGS:-} >/dev/null
cmake --build "$root/build" --target llama-bench llama-quantize -j "$(nproc)" >/dev/null
rm -rf "$root/bin" && cp -a "$root/build/bin" "$root/bin"
echo "$root/bin/llama-bench"
