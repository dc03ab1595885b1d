#!/usr/bin/env python3
"""PyTorch baseline timings of a schnetpack PaiNN model (schnetpack itself, not a copy).

The PaiNN counterpart of bench_torch.py: same cases, same neighbour lists (built in f64
beforehand by student_torch.build_graph, not timed), same variants and timing loop. One
step = schnetpack's NeuralNetworkPotential forward: energy, forces (its autograd) and,
when the model was built with `Forces(calc_stress=True)`, the stress. Molecules get a
100 Å cubic cell so that the stress path runs for every case (pbc off; no images).

    python3 tools/reference/bench_painn_torch.py painn.pt --device cuda --cases mol50,water10k
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

import bench_torch as common
import student_torch as ref


def load_schnetpack_model(path, dtype, device):
    model = torch.load(path, map_location="cpu", weights_only=False)
    model = model.to(dtype=dtype, device=device).eval()
    cutoff = None
    for module in model.modules():
        if hasattr(module, "cutoff") and torch.is_tensor(module.cutoff):
            cutoff = float(module.cutoff)
            break
    if cutoff is None:
        raise ValueError(f"{path}: no cutoff found in the model's modules")
    return model, cutoff


def schnetpack_inputs(structs, graph, dtype, device):
    """The dict schnetpack models read, from a student_torch Graph (Rij = R[j] - R[i] +
    offset, with i = graph.dst (centre) and j = graph.src)."""
    cells = []
    for _, _, cell, pbc in structs:
        c = torch.as_tensor(cell, dtype=dtype).reshape(3, 3) if cell is not None and any(pbc) else 100.0 * torch.eye(3, dtype=dtype)
        cells.append(c)
    n_atoms = torch.tensor(graph.n_atoms, dtype=torch.int64, device=device)
    idx_m = graph.batch if graph.batch is not None else torch.zeros(len(graph.numbers), dtype=torch.int64, device=device)
    return {
        "_atomic_numbers": graph.numbers,
        "_positions": graph.positions.clone(),
        "_cell": torch.stack(cells).to(device),
        "_pbc": torch.tensor([list(s[3]) for s in structs], dtype=torch.bool, device=device),
        "_n_atoms": n_atoms,
        "_idx_m": idx_m,
        "_idx_i": graph.dst,
        "_idx_j": graph.src,
        "_offsets": graph.shift_vec,
    }


def make_step(model, inputs, variant, device):
    t0 = time.perf_counter()
    fn = model
    if variant == "compile":
        fn = torch.compile(model, dynamic=False)
    elif variant == "reduce-overhead":
        fn = torch.compile(model, mode="reduce-overhead", dynamic=False)

    def eager_step(positions):
        batch = dict(inputs)
        batch["_positions"] = positions
        out = fn(batch)
        return out["energy"], out.get("forces"), out.get("stress")

    if variant in ("cudagraph",):
        static_pos = inputs["_positions"].clone()
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(3):
                eager_step(static_pos)
        torch.cuda.current_stream(device).wait_stream(side)
        cuda_graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(cuda_graph):
            outputs = eager_step(static_pos)

        def step(positions):
            static_pos.copy_(positions)
            cuda_graph.replay()
            return outputs
    else:
        step = eager_step
    for _ in range(3):
        step(inputs["_positions"])
    common.sync(device)
    return step, time.perf_counter() - t0


def run(args):
    device = torch.device(args.device)
    if device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    variants = args.variants.split(",") if args.variants else (
        ["eager", "compile", "cudagraph"] if device.type == "cuda" else ["eager"])
    dtypes = {"f32": torch.float32, "f64": torch.float64}
    rows = []
    for case in args.cases.split(","):
        structs = common.case_structures(case)
        n_atoms = sum(len(s[0]) for s in structs)
        for dname in args.dtype.split(","):
            dtype = dtypes[dname]
            model, cutoff = load_schnetpack_model(args.model, dtype, device)
            nl_device = device if (device.type == "cuda" and n_atoms > 5000 and len(structs) == 1) else "cpu"
            graph = ref.build_graph(structs, cutoff, dtype=dtype, device=device, nl_device=nl_device)
            inputs = schnetpack_inputs(structs, graph, dtype, device)
            print(f"# {case}: {n_atoms} atoms, {int(graph.src.numel())} edges, {dname}", flush=True)
            for variant in variants:
                row = dict(case=case, atoms=n_atoms, structures=len(structs), edges=int(graph.src.numel()),
                           dtype=dname, device=str(device), variant=variant, model="painn (schnetpack)")
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(device)
                try:
                    step, setup = make_step(model, inputs, variant, device)
                    holder = type("G", (), {"positions": inputs["_positions"]})
                    med, p10, p90, reps = common.time_step(step, holder, device, args.min_time, args.min_reps, args.max_reps)
                    row.update(status="ok", median_ms=med * 1e3, p10_ms=p10 * 1e3, p90_ms=p90 * 1e3, reps=reps, setup_s=setup)
                    if device.type == "cuda":
                        row["peak_mem_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
                    print(f"  {variant:12s} {med * 1e3:10.3f} ms (p10 {p10 * 1e3:.3f}, p90 {p90 * 1e3:.3f}, {reps} reps)", flush=True)
                    del step
                except torch.cuda.OutOfMemoryError:
                    row.update(status="out of memory")
                    print(f"  {variant:12s} out of memory", flush=True)
                except Exception as exc:  # a failing variant must not stop the others
                    lines = [l for l in str(exc).splitlines() if l.strip()]
                    # Inductor puts the cause on the last line, after a generic first line.
                    detail = " ... ".join(dict.fromkeys([lines[0][:200], lines[-1][:300]])) if lines else ""
                    row.update(status=f"failed: {type(exc).__name__}: {detail}")
                    print(f"  {variant:12s} {row['status']}", flush=True)
                torch._dynamo.reset()
                rows.append(row)
            del graph, model, inputs
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="torch.save'd schnetpack NeuralNetworkPotential")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cases", default="mol50,batch256x50,water10k,water100k")
    parser.add_argument("--dtype", default="f32")
    parser.add_argument("--variants")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--min-time", type=float, default=2.0)
    parser.add_argument("--min-reps", type=int, default=10)
    parser.add_argument("--max-reps", type=int, default=500)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    env = common.environment(args)
    rows = run(args)
    print(common.markdown(rows, env))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(environment=env, rows=rows), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
