#!/bin/bash
# Session 17, run h: the final build through the GPU test script (tests, variant passes, bitwise checks, benchmarks; no PyTorch).
cd "$(dirname "$0")/.." && SKIP_TORCH=1 bash scripts/gpu-student-bench-run.sh 2>&1 | grep -v "warning\|^evaluated"
