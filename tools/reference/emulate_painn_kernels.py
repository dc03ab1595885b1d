#!/usr/bin/env python3
"""Runs the PaiNN CUDA kernels (kernels/painn_*.cu) on the CPU, without a GPU: they are
compiled as plain C++ with a small shim (block and thread indices set per call), and
driven by a Python transcription of the launch sequence of src/engine/cuda/painn.rs
(`run`). The results are compared with schnetpack's own numbers in
tests/data/painn_fixtures.json.

    python3 tools/reference/emulate_painn_kernels.py [painn_b1 ...]

Needs python3 and g++ (no torch, no GPU). Slow (one Python call per GPU thread), so
only structures of up to 20 atoms are run. Exit status 1 if any structure is off by
more than 1e-9 eV / 1e-8 eV/Å. Keep the transcription in step with painn.rs.
"""
import ctypes, json, math, os, struct, subprocess, sys, tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SHIM = r"""
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
using std::sqrt; using std::exp; using std::cos; using std::sin;
#define __device__
#define __global__
#define __forceinline__ inline
#define __launch_bounds__(x)
// The PaiNN kernels use no shared memory; common.cuh's file-scope declarations become
// globals (poly_shared is defined below, after the includes).
#define __shared__
struct Dim { unsigned x = 0, y = 0, z = 0; };
Dim blockIdx, blockDim, threadIdx, gridDim;
using std::min; using std::max;
inline unsigned __ballot_sync(unsigned, bool) { return 0; }
inline int __popc(unsigned) { return 0; }
template <typename T> inline T __shfl_xor_sync(unsigned, T x, int) { return x; }
inline void __syncthreads() {}
inline void __syncwarp(unsigned = 0xffffffffu) {}
inline unsigned __activemask() { return 1u; }
inline int __ffs(unsigned x) { return x ? __builtin_ctz(x) + 1 : 0; }
template <typename T> inline T __shfl_sync(unsigned, T x, int) { return x; }
template <typename T> inline T atomicAdd(T* p, T x) { T old = *p; *p += x; return old; }
// Round-to-nearest arithmetic without contraction (the shim is compiled with
// -ffp-contract=off, and x86-64 without -mfma has no fused multiply-add to contract to).
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline double __dsqrt_rn(double a) { return std::sqrt(a); }
struct float2 { float x, y; };
struct float4 { float x, y, z, w; };
struct int4 { int x, y, z, w; };
struct uint4 { unsigned x, y, z, w; };
struct double2 { double x, y; };
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
inline float __uint_as_float(unsigned x) { float f; std::memcpy(&f, &x, sizeof f); return f; }
inline unsigned __float_as_uint(float f) { unsigned x; std::memcpy(&x, &f, sizeof x); return x; }
extern "C" void set_index(long long block, int thread, int threads) { blockIdx.x = block; threadIdx.x = thread; blockDim.x = threads; }
#include "KERNELS/common.cuh"
#include "KERNELS/painn_dense.cu"
#include "KERNELS/painn_dense_backward.cu"
#include "KERNELS/painn_message.cu"
#include "KERNELS/painn_message_backward.cu"
#include "KERNELS/painn_mixing.cu"
#include "KERNELS/painn_mixing_update.cu"
#include "KERNELS/painn_mixing_output_grad.cu"
#include "KERNELS/painn_mixing_input_grad.cu"
#include "KERNELS/painn_pair_gradient.cu"
#include "KERNELS/painn_distance_gradient.cu"
#include "KERNELS/painn_pair_basis.cu"
float4 poly_shared[1];
"""


def build_library():
    work = tempfile.mkdtemp(prefix="mlff-emu-")
    source = os.path.join(work, "shim.cpp")
    with open(source, "w") as f:
        f.write(SHIM.replace("KERNELS/", os.path.join(ROOT, "kernels") + "/"))
    library = os.path.join(work, "libemu.so")
    subprocess.run(["g++", "-O1", "-ffp-contract=off", "-shared", "-fPIC", "-o", library, source], check=True)
    return ctypes.CDLL(library)


lib = build_library()
D = ctypes.c_double
P = ctypes.c_void_p
I = ctypes.c_int

def arr(n, values=None):
    a = (D * max(n, 1))()
    if values is not None:
        for k, v in enumerate(values):
            a[k] = v
    return a

def uarr(values):
    a = (ctypes.c_uint32 * max(len(values), 1))()
    for k, v in enumerate(values):
        a[k] = v
    return a

def ptr(a, offset=0):
    return ctypes.cast(ctypes.byref(a, offset * ctypes.sizeof(a._type_)), P)

def launch(name, total, *args):
    fn = getattr(lib, name + "_f64")
    blocks = (total + 255) // 256
    for b in range(blocks):
        for t in range(256):
            if b * 256 + t >= total:
                break
            lib.set_index(ctypes.c_longlong(b), t, 256)
            fn(*args)

def read_safetensors(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__")
    body = data[8 + n:]
    t = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        fmt = {"F32": "f", "F64": "d"}[info["dtype"]]
        cnt = (b - a) // struct.calcsize(fmt)
        t[name] = list(struct.unpack("<%d%s" % (cnt, fmt), body[a:b]))
    return meta, t

def _det(m):
    return (m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]))


def _cross(a, b):
    return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]


def _norm(v):
    return math.sqrt(sum(x * x for x in v))


def _fractional(p, cell):
    det = _det(cell)
    inv = [[_cross(cell[1], cell[2])[a] / det, _cross(cell[2], cell[0])[a] / det, _cross(cell[0], cell[1])[a] / det] for a in range(3)]
    return [sum(p[a] * inv[a][k] for a in range(3)) for k in range(3)]


def neighbor_list(positions, cell, pbc, rc):
    """Every directed pair (i, j, shift) within rc (as tools/reference/make_painn_fixtures.py)."""
    n = len(positions)
    reach = [0, 0, 0]
    if any(pbc):
        volume = abs(_det(cell))
        for a in range(3):
            if pbc[a]:
                reach[a] = int(math.ceil(rc / (volume / _norm(_cross(cell[(a + 1) % 3], cell[(a + 2) % 3]))))) + 1
    frac = [_fractional(p, cell) if any(pbc) else [0.0] * 3 for p in positions]
    out = ([], [], [])
    for i in range(n):
        for j in range(n):
            base = [-math.floor(frac[j][a] - frac[i][a] + 0.5) if pbc[a] else 0 for a in range(3)]
            for s0 in range(base[0] - reach[0], base[0] + reach[0] + 1):
                for s1 in range(base[1] - reach[1], base[1] + reach[1] + 1):
                    for s2 in range(base[2] - reach[2], base[2] + reach[2] + 1):
                        if i == j and s0 == s1 == s2 == 0:
                            continue
                        sh = [s0 * cell[0][a] + s1 * cell[1][a] + s2 * cell[2][a] for a in range(3)]
                        if _norm([positions[j][a] - positions[i][a] + sh[a] for a in range(3)]) <= rc:
                            out[0].append(i)
                            out[1].append(j)
                            out[2].append(sh)
    return out


def build_list(positions, cell, pbc, rc):
    idx_i, idx_j, offs = neighbor_list(positions, cell, pbc, rc)
    pairs = []
    for i, j, sh in zip(idx_i, idx_j, offs):
        key = (i, j, tuple(sh))
        if i < j or (i == j and tuple(sh) > (0.0, 0.0, 0.0)):
            pairs.append((i, j, sh))
    edges = []  # (dest, source, pair, forward)
    for p, (i, j, sh) in enumerate(pairs):
        edges.append((i, j, p, True))
        edges.append((j, i, p, False))
    edges.sort(key=lambda e: (e[0], e[2], not e[3]))
    return pairs, edges

def run(meta, t, numbers, positions, cell, pbc):
    f = int(meta["hidden_dim"]); K = int(meta["num_rbf"]); L = int(meta["num_interactions"])
    sf = meta["shared_filters"] == "true"; si = meta["shared_interactions"] == "true"
    eps = float(meta["epsilon"]); rc = t["representation.cutoff_fn.cutoff"][0]
    widths = [int(w) for w in meta["readout_widths"].split(",")]
    n = len(numbers)
    pairs, edges = build_list(positions, cell, pbc, rc)
    npairs = len(pairs)
    vecs = []
    off, wid = t["representation.radial_basis.offsets"], t["representation.radial_basis.widths"]
    for (i, j, sh) in pairs:
        r = [positions[j][a] - positions[i][a] + sh[a] for a in range(3)]
        d = math.sqrt(sum(x * x for x in r)); vecs.append((r, d))
    # d, u, basis and cutoff on the "GPU" (painn_pair_basis), from the f64 pair vectors.
    unit, basis, bgrad, cut, cgrad = arr(3 * npairs), arr(npairs * K), arr(npairs * K), arr(npairs), arr(npairs)
    pvec = arr(3 * npairs, [x for (r, _) in vecs for x in r])
    off_a, wid_a = arr(K, off), arr(K, wid)  # kept alive through the launch
    launch("painn_pair_basis", npairs * K, I(npairs), I(K), ptr(pvec), ptr(off_a), ptr(wid_a), D(rc),
           ptr(unit), ptr(basis), ptr(bgrad), ptr(cut), ptr(cgrad))
    offsets = [0] * (n + 1)
    for e in edges:
        offsets[e[0] + 1] += 1
    for a in range(n):
        offsets[a + 1] += offsets[a]
    offsets = uarr(offsets); source = uarr([e[1] for e in edges]); word = uarr([e[2] | (0 if e[3] else 0x80000000) for e in edges])
    pi = uarr([p[0] for p in pairs]); pj = uarr([p[1] for p in pairs])
    W = {k: arr(len(v), v) for k, v in t.items()}
    emb = t["representation.embedding.weight"]
    q = arr(n * f, [emb[z * f + c] for z in numbers for c in range(f)])
    mu = arr(n * 3 * f)

    WT = {}

    def dense(rows, wname, bname, x, n_in, n_out, silu, woff=0, boff=0):
        # The kernel takes the weight transposed (n_in x all outputs; woff = first output column).
        w = t[wname]
        total_out = len(w) // n_in
        if wname not in WT:
            WT[wname] = arr(len(w), [w[o * n_in + k] for k in range(n_in) for o in range(total_out)])
        pre, out = arr(rows * n_out), arr(rows * n_out)
        bias = W[bname] if bname else arr(n_out)
        launch("painn_dense", rows * n_out, I(rows), I(n_in), I(n_out), ptr(x), ptr(WT[wname], woff), I(total_out),
               ptr(bias, boff), I(int(silu)), ptr(pre), ptr(out))
        # Without a SiLU the kernel writes `out` only; callers read the first result.
        return (pre, out) if silu else (out, out)

    def dense_backward(rows, wname, gy, n_in, n_out, input_pre=None, accumulate=False, gx=None, woff=0):
        gx = gx if gx is not None else arr(rows * n_in)
        launch("painn_dense_backward", rows * n_in, I(rows), I(n_in), I(n_out), ptr(gy), ptr(W[wname], woff),
               ptr(input_pre if input_pre is not None else gy), I(int(input_pre is not None)), I(int(accumulate)), ptr(gx))
        return gx

    saved = []
    for l in range(L):
        b = 0 if si else l
        fo = 0 if sf else 3 * f * l
        ic = "representation.interactions.%d.interatomic_context_net" % b
        mx = "representation.mixing.%d" % b
        raw, _ = dense(npairs, "representation.filter_net.weight", "representation.filter_net.bias", basis, K, 3 * f, False, woff=fo, boff=fo)
        cpre, cact = dense(n, ic + ".0.weight", ic + ".0.bias", q, f, f, True)
        x, _ = dense(n, ic + ".1.weight", ic + ".1.bias", cact, f, 3 * f, False)
        q1, mu1 = arr(n * f), arr(n * 3 * f)
        launch("painn_message", n * f, I(n), I(f), ptr(offsets), ptr(source), ptr(word), ptr(raw), ptr(cut), ptr(unit), ptr(x), ptr(q), ptr(mu), ptr(q1), ptr(mu1))
        vw, _ = dense(3 * n, mx + ".mu_channel_mix.weight", None, mu1, f, 2 * f, False)
        norm, ctx = arr(n * f), arr(n * 2 * f)
        launch("painn_mixing", n * f, I(n), I(f), D(eps), ptr(vw), ptr(q1), ptr(norm), ptr(ctx))
        mpre, mact = dense(n, mx + ".intraatomic_context_net.0.weight", mx + ".intraatomic_context_net.0.bias", ctx, 2 * f, f, True)
        mout, _ = dense(n, mx + ".intraatomic_context_net.1.weight", mx + ".intraatomic_context_net.1.bias", mact, f, 3 * f, False)
        q2, mu2 = arr(n * f), arr(n * 3 * f)
        launch("painn_mixing_update", n * f, I(n), I(f), ptr(vw), ptr(mout), ptr(q1), ptr(mu1), ptr(q2), ptr(mu2))
        saved.append(dict(raw=raw, cpre=cpre, x=x, mu_in=mu, vw=vw, norm=norm, mpre=mpre, mout=mout, ic=ic, mx=mx, fo=fo))
        q, mu = q2, mu2
    h = q; pres = []
    for i in range(len(widths) - 1):
        last = i + 2 == len(widths)
        p_, h = dense(n, "output_modules.0.outnet.%d.weight" % i, "output_modules.0.outnet.%d.bias" % i, h, widths[i], widths[i + 1], not last)
        pres.append(p_)
    scale = t["postprocessing.energy_scale"][0]; ae = t["postprocessing.atom_energy"]
    energy = sum(scale * h[i] + ae[numbers[i]] for i in range(n))
    g = arr(n, [scale] * n)
    gq = arr(n * f)
    for i in reversed(range(len(widths) - 1)):
        wn = "output_modules.0.outnet.%d.weight" % i
        if i == 0:
            dense_backward(n, wn, g, widths[0], widths[1], gx=gq)
        else:
            g = dense_backward(n, wn, g, widths[i], widths[i + 1], input_pre=pres[i - 1])
    gmu = arr(n * 3 * f); gunit = arr(3 * npairs); gdist = arr(npairs)
    for l in reversed(range(L)):
        s = saved[l]; ic, mx = s["ic"], s["mx"]
        gout = arr(n * 3 * f)
        launch("painn_mixing_output_grad", n * f, I(n), I(f), ptr(s["vw"]), ptr(gq), ptr(gmu), ptr(gout))
        gact = dense_backward(n, mx + ".intraatomic_context_net.1.weight", gout, f, 3 * f, input_pre=s["mpre"])
        gctx = dense_backward(n, mx + ".intraatomic_context_net.0.weight", gact, 2 * f, f)
        gq1, gvw = arr(n * f), arr(3 * n * 2 * f)
        launch("painn_mixing_input_grad", n * f, I(n), I(f), ptr(s["vw"]), ptr(s["mout"]), ptr(s["norm"]), ptr(gq), ptr(gmu), ptr(gctx), ptr(gq1), ptr(gvw))
        dense_backward(3 * n, mx + ".mu_channel_mix.weight", gvw, f, 2 * f, accumulate=True, gx=gmu)
        gmu1 = gmu
        gx, gmu_in = arr(n * 3 * f), arr(n * 3 * f)
        launch("painn_message_backward", n * f, I(n), I(f), ptr(offsets), ptr(source), ptr(word), ptr(s["raw"]), ptr(cut), ptr(unit), ptr(s["x"]), ptr(s["mu_in"]), ptr(gq1), ptr(gmu1), ptr(gx), ptr(gmu_in))
        gfil, gcut = arr(npairs * 3 * f), arr(npairs)
        partial = arr(4 * 32 * npairs)
        launch("painn_pair_gradient", npairs * 32, I(npairs), I(f), ptr(pi), ptr(pj), ptr(s["raw"]), ptr(cut), ptr(unit), ptr(s["x"]), ptr(s["mu_in"]), ptr(gq1), ptr(gmu1), ptr(gfil), ptr(partial))
        launch("painn_pair_gradient_sum", npairs, I(npairs), ptr(partial), ptr(gcut), ptr(gunit))
        gbasis = dense_backward(npairs, "representation.filter_net.weight", gfil, K, 3 * f, woff=s["fo"] * K)
        launch("painn_distance_gradient", npairs, I(npairs), I(K), ptr(gbasis), ptr(bgrad), ptr(gcut), ptr(cgrad), ptr(gdist))
        gact2 = dense_backward(n, ic + ".1.weight", gx, f, 3 * f, input_pre=s["cpre"])
        dense_backward(n, ic + ".0.weight", gact2, f, f, accumulate=True, gx=gq1)
        gq, gmu = gq1, gmu_in
    forces = [[0.0] * 3 for _ in range(n)]
    virial = [[0.0] * 3 for _ in range(3)]
    for p, (i, j, sh) in enumerate(pairs):
        r, d = vecs[p]
        u = [x / d for x in r]
        gu = [gunit[3 * p + a] for a in range(3)]
        along = sum(gu[a] * u[a] for a in range(3))
        G = [gdist[p] * u[a] + (gu[a] - along * u[a]) / d for a in range(3)]
        for a in range(3):
            forces[i][a] += G[a]; forces[j][a] -= G[a]
            for b in range(3):
                virial[a][b] -= r[a] * G[b]
    return energy, forces, virial

fixtures = json.load(open(os.path.join(ROOT, "tests", "data", "painn_fixtures.json")))
stems = sys.argv[1:] or list(fixtures["models"])
failed = False
for stem in stems:
    out = os.path.join(tempfile.mkdtemp(prefix="mlff-emu-"), stem + ".safetensors")
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "convert_model.py"), os.path.join(ROOT, "tests", "data", stem + ".pt"), out],
                   check=True, stdout=subprocess.DEVNULL)
    meta, t = read_safetensors(out)
    worst = [0, 0, 0]
    for s in fixtures["models"][stem]["structures"]:
        if len(s["numbers"]) > 20:
            continue
        e, fo, w = run(meta, t, s["numbers"], s["positions"], s["cell"], s["pbc"])
        de = abs(e - s["energy"])
        df = max(abs(fo[i][a] - s["forces"][i][a]) for i in range(len(fo)) for a in range(3))
        dw = max(abs(w[a][b] - s["virial"][a][b]) for a in range(3) for b in range(3))
        # NaN-safe: a NaN counts as the worst error and fails (max() would skip it).
        worst = [x if not (x <= y) else y for x, y in zip((de, df, dw), worst)]
        print("%s %-22s dE %.1e dF %.1e dW %.1e" % (stem, s["name"], de, df, dw))
        failed |= not (de <= 1e-9 and df <= 1e-8 and dw <= 1e-8)
    print("%s: worst dE %.1e dF %.1e dW %.1e" % (stem, worst[0], worst[1], worst[2]))
sys.exit(1 if failed else 0)
