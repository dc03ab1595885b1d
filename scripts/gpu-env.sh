# Sourced by the GPU run scripts (gpu-student-bench-run.sh, gpu-large-run.sh) on the GPU
# machine: enters .gpu (laid out by scripts/prepare-gpu-run.sh and carried), points mlff at
# the machine's NVRTC and at the carried models and fixtures, prepares $OUT, and prints
# the card and the time.
cd "$(dirname "${BASH_SOURCE[0]}")/../.gpu" || exit 1
L=$(find / -name 'libnvrtc.so.13' -not -path '/proc/*' 2>/dev/null | head -1)
export MLFF_NVRTC_DIR=$(dirname "$L") MLFF_CACHE_DIR=/tmp/mlffcache MLFF_TEST_MODEL_DIR=$PWD/models MLFF_FIXTURES=$PWD/student_public_fixtures.json MLFF_PAINN_FIXTURES=$PWD/painn_fixtures.json
OUT=${OUT:-/tmp/mlff-out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; date -u
