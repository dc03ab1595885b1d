#!/bin/bash
# The OpenMM CUDA-platform run on the GPU machine (copied to .omm/run.sh by
# scripts/prepare-openmm-gpu-run.sh, which carries what it needs). That machine:
# Python 3.12 with pip, numpy and pytest, cmake, g++, CUDA 13; no network, no Rust.
# Installs the carried wheels into /tmp/omm-site, builds the OpenMM plugin with its
# CUDA platform kernel against the carried libmlff.so, runs
# the device-input tests of tests/cuda.rs (a carried binary),
# tests/openmm/test_openmm_cuda.py (device path vs host path vs Reference) and the
# benchmark (water boxes, CUDA platform, device vs host path, ns/day). Everything
# it prints, and the JSON of the benchmark, lands in $OUT. About 3-6 minutes.
set -uo pipefail
omm="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$omm")"
OUT="${OUT:-/tmp/omm-out}"
mkdir -p "$OUT"
exec > >(tee "$OUT/run.log") 2>&1
export PYTHONUNBUFFERED=1
start=$SECONDS
step() { echo; echo "=== $* ($((SECONDS - start)) s)"; }

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
date -u
py="$(command -v python3)"
"$py" --version
site=/tmp/omm-site
build=/tmp/omm-build

step "install the carried wheels"
"$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
  "$omm"/wheels/*.whl || exit 1
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"

# libOpenMMCUDA.so needs libnvrtc.so.13 and libcufft.so.12 (its RUNPATH looks in a
# site-packages layout we do not have), mlff needs NVRTC too: from the toolkit or
# the nvidia-* wheels beside PyTorch.
find_lib() {
  find /usr/local/cuda/ /usr/local/cuda/lib64/ /opt /usr/lib /usr/local -name "$1" -not -path '*/stubs/*' \
    2>/dev/null | head -n 1
}
libdirs=""
for lib in libnvrtc.so.13 libcufft.so.12; do
  found="$(find_lib "$lib")"
  if [[ -n "$found" ]]; then
    libdirs="$libdirs:$(dirname "$found")"
    echo "$lib: $found"
  else
    echo "WARNING: $lib not found: OpenMM's CUDA platform will not load"
  fi
done
export LD_LIBRARY_PATH="${libdirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export MLFF_NVRTC_DIR="$(dirname "$(find_lib libnvrtc.so.13)")"
export MLFF_CACHE_DIR=/tmp/mlff-cache OPENMM_CACHE_DIR=/tmp/openmm-cache
mkdir -p "$MLFF_CACHE_DIR" "$OPENMM_CACHE_DIR"
cuda_include=""
for dir in /usr/local/cuda/include "$(dirname "$(find_lib cuda.h)")"; do
  if [[ -f "$dir/cuda.h" && -f "$dir/vector_types.h" ]]; then cuda_include="$dir"; break; fi
done
echo "CUDA headers: ${cuda_include:-not found}"
"$py" -c "import sysconfig, os; p = sysconfig.get_paths()['include']; print('Python.h:', p, os.path.exists(p + '/Python.h'))"

if [[ -z "${MLFF_OMM_TESTS_ONLY:-}" ]]; then
step "Rust: tests/cuda.rs (device inputs vs host inputs bitwise, caller's context)"
timeout 120 "$omm/cuda-tests" --test-threads=1 device_inputs model_in_a_caller >"$OUT/cuda-tests.log" 2>&1
echo "cuda tests exit status $?"
grep -E "^test |test result|panicked|SKIP" "$OUT/cuda-tests.log"
fi

step "build the plugin (libmlff_openmm, libmlff_openmm_cuda, the SWIG module)"
cmake -S "$repo/plugins/openmm" -B "$build" -DCMAKE_BUILD_TYPE=Release -DPython3_EXECUTABLE="$py" \
  -DSWIG_EXECUTABLE="$site/bin/swig" -DMLFF_LIBRARY="$omm/lib/libmlff.so" -DMLFF_AUTO_BUILD=OFF \
  -DMLFF_OPENMM_CUDA=ON -DCUDA_INCLUDE_DIR="$cuda_include" -DMLFF_OPENMM_PYTHON_DIR="$site/mlff_openmm" \
  >"$OUT/build.log" 2>&1 || { tail -n 40 "$OUT/build.log"; exit 1; }
cmake --build "$build" --parallel 16 >>"$OUT/build.log" 2>&1 || { tail -n 60 "$OUT/build.log"; exit 1; }
cmake --install "$build" >>"$OUT/build.log" 2>&1 || { tail -n 20 "$OUT/build.log"; exit 1; }
grep -E "mlff_openmm:|Found mlff" "$OUT/build.log"
"$py" - <<'PY'
import openmm, mlff_openmm
names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
print("OpenMM", openmm.version.full_version, "platforms", names, "mlff", mlff_openmm.library_version())
print("plugin load failures:", [f for f in openmm.Platform.getPluginLoadFailures() if "CUDA" in f])
print("device path:", mlff_openmm.cuda_device_path_status())
PY

step "pytest: tests/openmm/test_openmm_cuda.py"
cd "$repo/tests/openmm"
MLFF_OPENMM_TEST_MODEL="$omm/model-h32.safetensors" MLFF_LIBRARY="$omm/lib/libmlff.so" \
  timeout 200 "$py" -m pytest -v -s -p no:cacheprovider test_openmm_cuda.py >"$OUT/pytest.log" 2>&1
echo "pytest exit status $?"
grep -E "PASSED|FAILED|SKIPPED|ERROR|passed|failed|^\[|Error|assert" "$OUT/pytest.log" | head -n 80

# MLFF_OMM_TESTS_ONLY=1: the build and the pytest only (no Rust tests, no benchmark).
[[ -n "${MLFF_OMM_TESTS_ONLY:-}" ]] && { step "done"; exit 0; }
step "benchmark: water boxes, CUDA platform, device path vs host path"
timeout 220 "$py" bench_openmm_cuda.py --model "$omm/model-bench.safetensors" --atoms 3000,24000 \
  --cases f32:mixed,f64:double --seconds 4 --out "$OUT/bench.json" --markdown "$OUT/bench.md"
echo "benchmark exit status $?"
step "done"
