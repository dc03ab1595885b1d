#!/usr/bin/env python3
"""PyTorch baseline timings of the student (the reference implementation in student_torch.py).

One step = edge vectors from positions, energy, forces (autograd) and the 3x3 virial
(autograd w.r.t. edge vectors; per structure when batched). Inputs and outputs stay on the
device; the neighbour list is built beforehand (f64) and not timed. Each variant is warmed
up (compilation and graph capture happen there and are reported separately), then timed
for a median over repeated steps, each ended by a device synchronisation.

Variants: eager; compile (torch.compile of the model, default mode); reduce-overhead
(torch.compile mode="reduce-overhead", CUDA only); cudagraph (the whole eager step,
forward and backward, captured in one CUDA graph and replayed); compile+cudagraph (the
same capture of a step whose model is torch.compile'd, default mode).

    python3 tools/reference/bench_torch.py MODEL --device cuda --cases mol50,batch256x50,water10k,water100k
    python3 tools/reference/bench_torch.py MODEL --device cpu --threads 2 --cases mol50,water3000 --dtype f32,f64

Structures come from tools/structures.py: mol50 = organic_molecule(50, seed=0);
batch256x50 = organic_molecule(50, seed=s) for s in 0..255 in one graph;
waterN = water_box(ceil(N/3) molecules, seed=0) (water3000 = 1000 molecules,
water10k = 3334, water100k = 33334).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, ".."))

import student_torch as ref  # noqa: E402
import structures  # noqa: E402

VARIANTS_CUDA = ["eager", "compile", "reduce-overhead", "cudagraph", "compile+cudagraph"]
VARIANTS_CPU = ["eager", "compile"]


def case_structures(name: str):
    """[(numbers, positions, cell, pbc)] for a named case."""
    if name.startswith("mol"):
        s = structures.organic_molecule(int(name[3:]), seed=0)
        return [(s.numbers, s.positions, s.cell, s.pbc)]
    if name.startswith("batch"):
        count, size = (int(x) for x in name[5:].split("x"))
        out = []
        for seed in range(count):
            s = structures.organic_molecule(size, seed=seed)
            out.append((s.numbers, s.positions, s.cell, s.pbc))
        return out
    if name.startswith("water"):
        text = name[5:]
        atoms = int(float(text[:-1]) * 1000) if text.endswith("k") else int(text)
        s = structures.water_box(math.ceil(atoms / 3), seed=0)
        return [(s.numbers, s.positions, s.cell, s.pbc)]
    raise ValueError(f"unknown case {name}")


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(model, graph, variant, device, virial=True):
    """Returns (step callable returning (energy, forces, virial), setup seconds)."""
    t0 = time.perf_counter()
    fn = model
    if variant in ("compile", "compile+cudagraph"):
        fn = torch.compile(model, dynamic=False)
    elif variant == "reduce-overhead":
        fn = torch.compile(model, mode="reduce-overhead", dynamic=False)

    def eager_step(pos):
        e, _, f, w = ref.evaluate(model, graph, positions=pos, virial=virial, energy_fn=fn)
        return e, f, w

    if variant in ("cudagraph", "compile+cudagraph"):
        static_pos = graph.positions.clone()
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(3):
                eager_step(static_pos)
        torch.cuda.current_stream(device).wait_stream(side)
        cuda_graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(cuda_graph):
            outputs = eager_step(static_pos)

        def step(pos):
            static_pos.copy_(pos)
            cuda_graph.replay()
            return outputs

    else:
        step = eager_step
    for _ in range(3):  # warm-up: compilation, autotuning, graph recording
        step(graph.positions)
    sync(device)
    return step, time.perf_counter() - t0


def time_step(step, graph, device, min_time, min_reps, max_reps):
    times = []
    start = time.perf_counter()
    while len(times) < max_reps and (len(times) < min_reps or time.perf_counter() - start < min_time):
        t0 = time.perf_counter()
        step(graph.positions)
        sync(device)
        times.append(time.perf_counter() - t0)
    times.sort()
    q = lambda p: times[min(len(times) - 1, int(p * len(times)))]  # noqa: E731
    return statistics.median(times), q(0.1), q(0.9), len(times)


def run(args):
    device = torch.device(args.device)
    if device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    variants = args.variants.split(",") if args.variants else (VARIANTS_CUDA if device.type == "cuda" else VARIANTS_CPU)
    dtypes = {"f32": torch.float32, "f64": torch.float64}
    rows = []
    t_start = time.perf_counter()
    for case in args.cases.split(","):
        structs = case_structures(case)
        n_atoms = sum(len(s[0]) for s in structs)
        for dname in args.dtype.split(","):
            dtype = dtypes[dname]
            model = ref.load_model(args.model, dtype, device)
            nl_device = device if (device.type == "cuda" and n_atoms > 5000 and len(structs) == 1) else "cpu"
            t0 = time.perf_counter()
            graph = ref.build_graph(structs, model.cutoff, dtype=dtype, device=device, nl_device=nl_device)
            nl_s = time.perf_counter() - t0
            n_edges = int(graph.src.numel())
            print(f"# {case}: {n_atoms} atoms, {len(structs)} structures, {n_edges} edges, {dname}; neighbour list {nl_s:.2f} s (untimed)", flush=True)
            for variant in variants:
                row = dict(case=case, atoms=n_atoms, structures=len(structs), edges=n_edges, dtype=dname, device=str(device), threads=torch.get_num_threads() if device.type == "cpu" else None, variant=variant)
                if args.budget and time.perf_counter() - t_start > args.budget:
                    row.update(status="skipped (time budget)")
                    rows.append(row)
                    print(f"  {variant:18s} skipped (time budget)", flush=True)
                    continue
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(device)
                try:
                    step, setup = make_step(model, graph, variant, device, virial=not args.no_virial)
                    med, p10, p90, reps = time_step(step, graph, device, args.min_time, args.min_reps, args.max_reps)
                    row.update(status="ok", median_ms=med * 1e3, p10_ms=p10 * 1e3, p90_ms=p90 * 1e3, reps=reps, setup_s=setup)
                    if device.type == "cuda":
                        row["peak_mem_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
                    mem = f", peak {row['peak_mem_mib']:.0f} MiB" if "peak_mem_mib" in row else ""
                    print(f"  {variant:18s} {med * 1e3:10.3f} ms (p10 {p10 * 1e3:.3f}, p90 {p90 * 1e3:.3f}, {reps} reps, setup {setup:.1f} s{mem})", flush=True)
                    del step
                except torch.cuda.OutOfMemoryError:
                    row.update(status="out of memory")
                    print(f"  {variant:18s} out of memory", flush=True)
                except Exception as exc:  # a variant that fails must not stop the others
                    row.update(status=f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
                    print(f"  {variant:18s} {row['status']}", flush=True)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                    torch.cuda.empty_cache()
                torch._dynamo.reset()
                rows.append(row)
            del graph, model
    return rows


def environment(args):
    env = dict(date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), torch=torch.__version__, python=platform.python_version(), command=" ".join(sys.argv))
    if args.device.startswith("cuda"):
        env["device"] = torch.cuda.get_device_name(0)
    cpu = platform.processor()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    env["cpu"] = cpu
    env["cpu_count"] = os.cpu_count()
    return env


def markdown(rows, env):
    def fmt(r):
        if r is None:
            return "—"
        if r.get("status") != "ok":
            return r.get("status", "—")
        mem = f" ({r['peak_mem_mib']:.0f} MiB)" if "peak_mem_mib" in r else ""
        return f"{r['median_ms']:.3f} ms{mem}"

    variants = []
    for r in rows:
        if r["variant"] not in variants:
            variants.append(r["variant"])
    keys = []
    for r in rows:
        k = (r["case"], r["dtype"])
        if k not in keys:
            keys.append(k)
    lines = [
        f"Date {env['date']}; torch {env['torch']}; device {env.get('device', 'cpu')}; CPU {env['cpu']} ({env['cpu_count']} logical CPUs)" + (f"; {rows[0]['threads']} threads" if rows and rows[0].get("threads") else ""),
        "",
        f"Command: `{env['command']}`",
        "",
        "Median per step (energy + forces + virial; neighbour list prebuilt, untimed; device-resident inputs). Parentheses: peak GPU memory.",
        "",
        "| case | atoms | edges | dtype | " + " | ".join(variants) + " | best |",
        "|---|---|---|---|" + "---|" * (len(variants) + 1),
    ]
    for case, dtype in keys:
        group = {r["variant"]: r for r in rows if r["case"] == case and r["dtype"] == dtype}
        any_row = next(iter(group.values()))
        ok = [r for r in group.values() if r.get("status") == "ok"]
        best = min(ok, key=lambda r: r["median_ms"]) if ok else None
        best_text = f"{best['median_ms']:.3f} ms ({best['variant']})" if best else "—"
        lines.append(f"| {case} | {any_row['atoms']} | {any_row['edges']} | {dtype} | " + " | ".join(fmt(group.get(v)) for v in variants) + f" | {best_text} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help=".safetensors, .pt or .onnx (weights only)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cases", default="mol50,batch256x50,water10k,water100k")
    parser.add_argument("--dtype", default="f32", help="comma list of f32,f64")
    parser.add_argument("--variants", help="comma list (default: all that apply to the device)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--min-time", type=float, default=2.0, help="seconds of timed steps per variant (at least)")
    parser.add_argument("--min-reps", type=int, default=10)
    parser.add_argument("--max-reps", type=int, default=500)
    parser.add_argument("--budget", type=float, default=0, help="skip variants once this many seconds have passed")
    parser.add_argument("--no-virial", action="store_true")
    parser.add_argument("--json", help="write the rows and environment here")
    parser.add_argument("--markdown", help="write the table here")
    args = parser.parse_args(argv)
    env = environment(args)
    rows = run(args)
    table = markdown(rows, env)
    print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(environment=env, rows=rows), f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
