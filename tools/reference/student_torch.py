#!/usr/bin/env python3
"""Independent PyTorch reference of the MLFF-Distiller student (docs: ../shared/docs/student-model.md).

Energy per atom and in total, forces by autograd (-dE/dr_i), the full 3x3 virial
W[a][b] = -sum_edges r_ji[a] dE/dr_ji[b] (autograd with respect to the edge vectors),
in float64 or float32, on CPU or CUDA, for one structure or many batched into one graph.

Weights come from mlff's safetensors model files (own reader: json header + raw bytes),
from a PyTorch checkpoint (`{"model_state_dict", "config"}`) or bare state dict, or from
the MLFF-Distiller ONNX exports (own reader of the graph's initializers; the graph itself
is wrong and ignored). Only torch (no numpy) is needed.

Reference numbers (`eval`, `check-fixtures`, tools/reference/make_fixtures.py) use
`row_invariant=True` layers so that exact symmetric cancellations stay exact (see `Linear`);
timings (bench_torch.py) use plain nn.Linear.

Command line:
    student_torch.py eval MODEL IN.extxyz [--dtype f64|f32] [--device cpu|cuda] [--json OUT]
    student_torch.py convert MODEL OUT.safetensors [--provenance TEXT] [--f64]
    student_torch.py check-fixtures FIXTURES.json MODELS_DIR [--tol-energy 1e-10 --tol-force 1e-10]
    student_torch.py selftest
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys
from dataclasses import dataclass

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

# ============================================================================ the model


class Linear(nn.Linear):
    """nn.Linear (same parameters) with an optional row-invariant evaluation.

    BLAS GEMMs round the rows of a tile tail differently from the others, so two edges
    with the same input can get filter values that differ in the last bit; at a site
    where vector messages cancel exactly (CO2's carbon) that leaves |v| ~ 1e-17 instead
    of 0 and a force off by ~1e-3 (dn/dv = v/n then points where rounding says). With
    `row_invariant` every output element is the same fixed sequence of element-wise
    operations, y = b + sum_k x_k W_k in k order, whatever its row."""

    row_invariant = False

    def forward(self, x):
        if not self.row_invariant:
            return super().forward(x)
        y = self.bias.expand(*x.shape[:-1], self.out_features)
        for k in range(self.in_features):
            y = y + x[..., k : k + 1] * self.weight[:, k]
        return y


def set_row_invariant(model: nn.Module, on: bool = True) -> None:
    for module in model.modules():
        if isinstance(module, Linear):
            module.row_invariant = on


class GaussianRBF(nn.Module):
    """e_k(d) = exp(-(d - mu_k)^2 / sigma_k^2) times the cosine cutoff (d < rc)."""

    def __init__(self, num_rbf: int, cutoff: float):
        super().__init__()
        self.cutoff = float(cutoff)
        self.register_buffer("centers", torch.linspace(0.0, cutoff, num_rbf, dtype=torch.float64).float())
        self.register_buffer("widths", torch.full((num_rbf,), cutoff / num_rbf))

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        basis = torch.exp(-((d[:, None] - self.centers) ** 2) / self.widths**2)
        cosine = 0.5 * (torch.cos(math.pi * d / self.cutoff) + 1.0)
        fc = torch.where(d < self.cutoff, cosine, torch.zeros_like(d))
        return basis * fc[:, None]


class Message(nn.Module):
    def __init__(self, hidden: int, num_rbf: int):
        super().__init__()
        self.hidden = hidden
        self.rbf_to_scalar = nn.Sequential(Linear(num_rbf, hidden), nn.SiLU(), Linear(hidden, 3 * hidden))

    def forward(self, s, v, a, unit, src, dst):
        h = self.hidden
        phi = self.rbf_to_scalar(a)
        phi_s, phi_v1, phi_v2 = phi[:, :h], phi[:, h : 2 * h], phi[:, 2 * h :]
        # Every term uses the state from before the block.
        msg_s = s[src] * phi_s
        msg_v = v[src] * phi_v1[:, None, :] + unit[:, :, None] * phi_v2[:, None, :]
        ds = torch.zeros_like(s).index_add(0, dst, msg_s)
        dv = torch.zeros_like(v).index_add(0, dst, msg_v)
        return s + ds, v + dv


def safe_norm(v: torch.Tensor, dim: int) -> torch.Tensor:
    """Euclidean norm with d|v|/dv = 0 where |v| = 0 (isolated atoms, symmetric sites)."""
    sq = (v * v).sum(dim)
    nonzero = sq > 0
    return torch.where(nonzero, torch.sqrt(torch.where(nonzero, sq, torch.ones_like(sq))), torch.zeros_like(sq))


class Update(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.update_mlp = nn.Sequential(Linear(2 * hidden, hidden), nn.SiLU(), Linear(hidden, 3 * hidden))
        self.mixing_matrix = nn.Parameter(torch.eye(3))

    def forward(self, s, v, update_vectors: bool):
        h = self.hidden
        n = safe_norm(v, 1)
        out = self.update_mlp(torch.cat([s, n], dim=-1))
        ds, g1, g2 = out[:, :h], out[:, h : 2 * h], out[:, 2 * h :]
        s = s + ds
        if update_vectors:
            # (M v)[a] = M[a,0] v[0] + M[a,1] v[1] + M[a,2] v[2], element-wise in this fixed
            # order (not a GEMM, whose order varies with the column): mirror-image atoms then
            # get exactly opposite vectors, so at a site like CO2's carbon n is exactly 0.
            m = self.mixing_matrix
            mixed = torch.stack([(m[a, 0] * v[:, 0] + m[a, 1] * v[:, 1]) + m[a, 2] * v[:, 2] for a in range(3)], dim=1)
            v = v * g1[:, None, :] + mixed * g2[:, None, :]
        return s, v


class Interaction(nn.Module):
    def __init__(self, hidden: int, num_rbf: int):
        super().__init__()
        self.message = Message(hidden, num_rbf)
        self.update = Update(hidden)


class StudentForceField(nn.Module):
    """PaiNN-style student; parameter names match MLFF-Distiller's state dicts."""

    def __init__(self, hidden_dim: int = 128, num_interactions: int = 3, num_rbf: int = 20, cutoff: float = 5.0, max_z: int = 100):
        super().__init__()
        if hidden_dim % 4:
            raise ValueError("hidden_dim must be a multiple of 4")
        self.config = dict(hidden_dim=hidden_dim, num_interactions=num_interactions, num_rbf=num_rbf, cutoff=float(cutoff), max_z=max_z)
        self.hidden = hidden_dim
        self.cutoff = float(cutoff)
        self.max_z = max_z
        self.embedding = nn.Embedding(max_z + 1, hidden_dim)
        self.rbf = GaussianRBF(num_rbf, cutoff)
        self.interactions = nn.ModuleList([Interaction(hidden_dim, num_rbf) for _ in range(num_interactions)])
        h = hidden_dim
        self.energy_head = nn.Sequential(Linear(h, h // 2), nn.SiLU(), Linear(h // 2, h // 4), nn.SiLU(), Linear(h // 4, 1))

    def forward(self, numbers, edge_vec, edge_src, edge_dst, batch=None, num_graphs: int = 1):
        """Returns (energy per graph [num_graphs], energy per atom [N]) from edge vectors r_j - r_i."""
        d = torch.sqrt((edge_vec * edge_vec).sum(-1))  # every edge has d > 0
        unit = edge_vec / (d + 1e-8)[:, None]
        a = self.rbf(d)
        s = self.embedding(numbers)
        v = s.new_zeros((s.shape[0], 3, self.hidden))
        last = len(self.interactions) - 1
        for l, block in enumerate(self.interactions):
            s, v = block.message(s, v, a, unit, edge_src, edge_dst)
            # The last block's vector update never reaches the energy.
            s, v = block.update(s, v, update_vectors=l < last)
        atom_energy = self.energy_head(s).squeeze(-1)
        if batch is None:
            graph_energy = atom_energy.sum()[None]
        else:
            graph_energy = atom_energy.new_zeros(num_graphs).index_add(0, batch, atom_energy)
        return graph_energy, atom_energy


# ============================================================================ weights


def _varint(b, i):
    result = shift = 0
    while True:
        c = b[i]
        i += 1
        result |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            return result, i


def _proto_fields(b):
    """(field number, wire type, value) of one protobuf message."""
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(b, i)
        elif wire == 1:
            value, i = b[i : i + 8], i + 8
        elif wire == 5:
            value, i = b[i : i + 4], i + 4
        elif wire == 2:
            n, i = _varint(b, i)
            value, i = b[i : i + n], i + n
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield field, wire, value


_ONNX_DTYPES = {1: (torch.float32, 4), 11: (torch.float64, 8), 10: (torch.float16, 2), 16: (torch.bfloat16, 2)}


def read_onnx_initializers(path: str) -> dict:
    """Named initializers of an ONNX model (ModelProto.graph=7, GraphProto.initializer=5;
    TensorProto dims=1, data_type=2, float_data=4, name=8, raw_data=9, double_data=10)."""
    data = memoryview(open(path, "rb").read())
    graphs = [v for f, w, v in _proto_fields(data) if f == 7 and w == 2]
    if not graphs:
        raise ValueError(f"{path}: no graph in this ONNX file")
    out = {}
    for f, w, tensor in _proto_fields(graphs[0]):
        if f != 5 or w != 2:
            continue
        dims, dtype, name, raw, floats, doubles = [], 1, "", None, [], []
        for tf, tw, tv in _proto_fields(tensor):
            if tf == 1 and tw == 0:
                dims.append(tv)
            elif tf == 1 and tw == 2:
                j = 0
                while j < len(tv):
                    x, j = _varint(tv, j)
                    dims.append(x)
            elif tf == 2:
                dtype = tv
            elif tf == 8:
                name = bytes(tv).decode()
            elif tf == 9:
                raw = bytes(tv)
            elif tf == 4:
                floats.append(bytes(tv))
            elif tf == 10:
                doubles.append(bytes(tv))
        if dtype not in _ONNX_DTYPES:
            raise ValueError(f"{path}: initializer {name} has unsupported data type {dtype}")
        tdtype, _ = _ONNX_DTYPES[dtype]
        if raw is None:
            raw = b"".join(floats) if dtype == 1 else b"".join(doubles)
        t = torch.frombuffer(bytearray(raw), dtype=tdtype).clone() if raw else torch.zeros(0, dtype=tdtype)
        out[name] = t.reshape(dims)
    return out


_ST_DTYPES = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16}


def read_safetensors(path: str):
    """(tensors, metadata) of a safetensors file: u64 header size, json header, raw bytes."""
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    metadata = header.pop("__metadata__", {}) or {}
    base = 8 + n
    tensors = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[base + start : base + end]), dtype=_ST_DTYPES[info["dtype"]])
        tensors[name] = t.reshape(info["shape"])
    return tensors, metadata


def write_safetensors(path: str, tensors: dict, metadata: dict) -> None:
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        dtype = {torch.float32: "F32", torch.float64: "F64"}[t.dtype]
        blob = _tensor_bytes(t)
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def _tensor_bytes(t: torch.Tensor) -> bytes:
    try:
        return t.contiguous().numpy().tobytes()
    except (ImportError, RuntimeError):  # torch without numpy
        return bytes(t.contiguous().view(torch.uint8).reshape(-1).tolist())


def load_weights(path: str):
    """(state dict, config) from .safetensors, .pt/.pth (checkpoint or state dict) or .onnx."""
    lower = path.lower()
    config = {}
    if lower.endswith(".safetensors"):
        state, meta = read_safetensors(path)
        for key, cast in (("hidden_dim", int), ("num_interactions", int), ("num_rbf", int), ("cutoff", float), ("max_z", int)):
            if key in meta:
                config[key] = cast(meta[key])
    elif lower.endswith(".onnx"):
        state = read_onnx_initializers(path)
    else:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(obj, dict) and "model_state_dict" in obj:
            state = obj["model_state_dict"]
            config = dict(obj.get("config") or {})
        else:
            state = obj
    state = {k: v for k, v in state.items()}
    emb = state["embedding.weight"]
    inferred = dict(
        hidden_dim=emb.shape[1],
        max_z=emb.shape[0] - 1,
        num_rbf=state["rbf.centers"].shape[0],
        num_interactions=1 + max(int(k.split(".")[1]) for k in state if k.startswith("interactions.")),
        cutoff=float(state["rbf.centers"][-1]),  # rc equals the last centre
    )
    for key, value in inferred.items():
        if key != "cutoff" and key in config and int(config[key]) != value:
            raise ValueError(f"{path}: config {key}={config[key]} but the tensors say {value}")
        config.setdefault(key, value)
    return state, config


def load_model(path: str, dtype=torch.float64, device="cpu", row_invariant: bool = False) -> StudentForceField:
    """Loads weights into a StudentForceField. `row_invariant=True` (use it for reference
    numbers, not for timing) makes symmetric cancellations exact; see `Linear`."""
    state, config = load_weights(path)
    model = StudentForceField(**{k: config[k] for k in ("hidden_dim", "num_interactions", "num_rbf", "cutoff", "max_z")})
    last = f"interactions.{config['num_interactions'] - 1}.update.mixing_matrix"
    if last not in state:  # released files omit it: it cannot reach the energy
        state[last] = torch.eye(3)
    missing, unexpected = model.load_state_dict({k: v.to(torch.float64) for k, v in state.items()}, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: missing tensors {missing}, unexpected tensors {unexpected}")
    set_row_invariant(model, row_invariant)
    # Only input gradients are wanted; without this a compiled backward also computes
    # every weight gradient.
    model.requires_grad_(False)
    return model.to(dtype=dtype, device=device).eval()


def mlff_tensors(model: StudentForceField, dtype=torch.float32) -> dict:
    """The model's tensors as an mlff model file holds them (no last mixing matrix)."""
    last = f"interactions.{len(model.interactions) - 1}.update.mixing_matrix"
    return {k: v.detach().to(dtype) for k, v in model.state_dict().items() if k != last}


def save_mlff_model(model: StudentForceField, path: str, provenance: str, dtype=torch.float32) -> None:
    c = model.config
    meta = {
        "format_version": "1",
        "architecture": "mlff-distiller-student",
        "hidden_dim": c["hidden_dim"],
        "num_rbf": c["num_rbf"],
        "num_interactions": c["num_interactions"],
        "cutoff": repr(float(c["cutoff"])),
        "max_z": c["max_z"],
        "energy_unit": "eV",
        "length_unit": "angstrom",
        "provenance": provenance,
    }
    write_safetensors(path, mlff_tensors(model, dtype), meta)


# ============================================================================ neighbour list


@dataclass
class NeighborList:
    """Ordered pairs (src j -> dst i) with d <= rc; shifts are integer lattice images such
    that r_ji = (r_j - r_i) + shift @ cell, in the input (not wrapped) coordinates."""

    src: torch.Tensor  # int64 [E]
    dst: torch.Tensor  # int64 [E]
    shifts: torch.Tensor  # int64 [E, 3]
    shift_vec: torch.Tensor  # float64 [E, 3] = shifts @ cell

    def __len__(self):
        return int(self.src.shape[0])


def _as_cell(cell, pbc, device):
    cell = torch.zeros(3, 3, dtype=torch.float64, device=device) if cell is None else torch.as_tensor(cell, dtype=torch.float64, device=device).reshape(3, 3)
    pbc = [False] * 3 if pbc is None else [bool(p) for p in pbc]
    return cell, pbc


def _shift_vectors(shifts: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
    # n0 a0 + n1 a1 + n2 a2, summed in that order (no matmul: fixed rounding)
    s = shifts.to(torch.float64)
    return (s[:, 0:1] * cell[0] + s[:, 1:2] * cell[1]) + s[:, 2:3] * cell[2]


def _edge_vectors64(pos, src, dst, shift_vec):
    return (pos[src] - pos[dst]) + shift_vec


def _finish(pos, cell, src, dst, shifts, cutoff):
    """Exact decision d <= rc in f64 from the input coordinates, self-pairs dropped, sorted."""
    shift_vec = _shift_vectors(shifts, cell)
    vec = _edge_vectors64(pos, src, dst, shift_vec)
    d = torch.sqrt((vec * vec).sum(-1))
    self_pair = (src == dst) & (shifts == 0).all(-1)
    keep = (d <= cutoff) & ~self_pair
    src, dst, shifts, shift_vec = src[keep], dst[keep], shifts[keep], shift_vec[keep]
    # Sort by (dst, src, shift) so the list is the same however it was found.
    n = pos.shape[0]
    span = int(shifts.abs().max()) + 1 if shifts.numel() else 1
    width = 2 * span + 1
    sk = ((shifts[:, 0] + span) * width + (shifts[:, 1] + span)) * width + (shifts[:, 2] + span)
    key = (dst * n + src) * (width**3) + sk
    order = torch.argsort(key)
    return NeighborList(src[order], dst[order], shifts[order], shift_vec[order])


def _periodic_frame(cell, pbc):
    axes = [k for k in range(3) if pbc[k]]
    if not axes:
        return axes, None
    a = cell[axes]  # |P| x 3
    b = torch.linalg.pinv(a)  # 3 x |P|, a @ b = I
    if not torch.allclose(a @ b, torch.eye(len(axes), dtype=torch.float64, device=cell.device), atol=1e-9):
        raise ValueError("the periodic lattice vectors are zero or linearly dependent")
    return axes, b


def neighbor_list(positions, cell, pbc, cutoff: float, device=None, chunk: int = 16384) -> NeighborList:
    """Cell-list search over periodic images (per-axis pbc, triclinic, any cell size,
    unwrapped coordinates). The edge decision is d <= rc in f64 on the input coordinates."""
    pos = torch.as_tensor(positions, dtype=torch.float64, device=device).reshape(-1, 3)
    device = pos.device
    cell, pbc = _as_cell(cell, pbc, device)
    n = pos.shape[0]
    empty = torch.zeros(0, dtype=torch.int64, device=device)
    if n == 0:
        return NeighborList(empty, empty, empty.reshape(0, 3), torch.zeros(0, 3, dtype=torch.float64, device=device))
    search = cutoff * (1 + 1e-9) + 1e-9  # candidates; _finish makes the exact decision
    axes, b = _periodic_frame(cell, pbc)
    n0 = torch.zeros(n, 3, dtype=torch.int64, device=device)
    wrapped = pos
    img_atom = torch.arange(n, device=device)
    img_shift = torch.zeros(n, 3, dtype=torch.int64, device=device)
    if axes:
        frac = pos @ b
        whole = torch.floor(frac)
        n0[:, axes] = whole.to(torch.int64)
        wrapped = pos - whole @ cell[axes]
        fw = wrapped @ b
        reach = search * b.norm(dim=0)  # |P|: fractional reach of rc along each periodic axis
        ranges = [torch.arange(-int(math.ceil(r)) - 1, int(math.ceil(r)) + 2, device=device) for r in reach.tolist()]
        grid = torch.cartesian_prod(*ranges).reshape(-1, len(axes))
        atoms, shifts = [], []
        for s in grid:
            f = fw + s.to(torch.float64)
            ok = ((f >= -reach - 1e-9) & (f <= 1 + reach + 1e-9)).all(-1)
            idx = torch.nonzero(ok).squeeze(-1)
            if idx.numel():
                full = torch.zeros(idx.numel(), 3, dtype=torch.int64, device=device)
                full[:, axes] = s
                atoms.append(idx)
                shifts.append(full)
        img_atom = torch.cat(atoms)
        img_shift = torch.cat(shifts)
    img_pos = wrapped[img_atom] + _shift_vectors(img_shift, cell)
    # Bin image atoms into cubes of edge `search`; look up the 27 bins around each atom.
    origin = torch.minimum(img_pos.min(0).values, wrapped.min(0).values)
    bins_img = torch.floor((img_pos - origin) / search).to(torch.int64) + 1
    bins_ctr = torch.floor((wrapped - origin) / search).to(torch.int64) + 1
    dims = torch.maximum(bins_img.max(0).values, bins_ctr.max(0).values) + 2
    def key(bins):
        return (bins[..., 0] * dims[1] + bins[..., 1]) * dims[2] + bins[..., 2]
    kimg = key(bins_img)
    order = torch.argsort(kimg)
    ksorted = kimg[order]
    offsets = torch.tensor([[x, y, z] for x in (-1, 0, 1) for y in (-1, 0, 1) for z in (-1, 0, 1)], device=device)
    srcs, dsts, shs = [], [], []
    for start in range(0, n, chunk):
        ctr = torch.arange(start, min(n, start + chunk), device=device)
        q = key(bins_ctr[ctr][:, None, :] + offsets[None])  # c x 27
        lo = torch.searchsorted(ksorted, q.reshape(-1), right=False)
        hi = torch.searchsorted(ksorted, q.reshape(-1), right=True)
        count = hi - lo
        total = int(count.sum())
        if total == 0:
            continue
        owner = torch.repeat_interleave(torch.arange(count.numel(), device=device), count)
        first = torch.cumsum(count, 0) - count
        within = torch.arange(total, device=device) - first[owner]
        cand = order[lo[owner] + within]
        i = ctr[owner // 27]
        # cheap prefilter on wrapped coordinates, then the exact test in _finish
        dv = img_pos[cand] - wrapped[i]
        close = (dv * dv).sum(-1) <= search * search
        i, cand = i[close], cand[close]
        j = img_atom[cand]
        # back to input coordinates: r_j + S a - r_i with S = image - n0_j + n0_i
        shift = img_shift[cand] - n0[j] + n0[i]
        srcs.append(j)
        dsts.append(i)
        shs.append(shift)
    if not srcs:
        return NeighborList(empty, empty, empty.reshape(0, 3), torch.zeros(0, 3, dtype=torch.float64, device=device))
    return _finish(pos, cell, torch.cat(srcs), torch.cat(dsts), torch.cat(shs), cutoff)


def neighbor_list_bruteforce(positions, cell, pbc, cutoff: float) -> NeighborList:
    """O(N^2 x images) search, for tests: every pair, every image that can be within rc."""
    pos = torch.as_tensor(positions, dtype=torch.float64).reshape(-1, 3)
    cell, pbc = _as_cell(cell, pbc, pos.device)
    n = pos.shape[0]
    axes, b = _periodic_frame(cell, pbc)
    ranges = [torch.zeros(1, dtype=torch.int64)] * 3
    if axes:
        frac = pos @ b
        spread = (frac.max(0).values - frac.min(0).values)
        reach = cutoff * b.norm(dim=0)
        for k, ax in enumerate(axes):
            m = int(math.ceil(float(spread[k] + reach[k]))) + 1
            ranges[ax] = torch.arange(-m, m + 1)
    grid = torch.cartesian_prod(*ranges).reshape(-1, 3)
    ii, jj = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    ii, jj = ii.reshape(-1), jj.reshape(-1)
    srcs, dsts, shs = [], [], []
    for s in grid:
        sh = s.expand(ii.numel(), 3)
        vec = _edge_vectors64(pos, jj, ii, _shift_vectors(sh, cell))
        d = torch.sqrt((vec * vec).sum(-1))
        ok = d <= cutoff * (1 + 1e-9) + 1e-9
        srcs.append(jj[ok])
        dsts.append(ii[ok])
        shs.append(sh[ok])
    return _finish(pos, cell, torch.cat(srcs), torch.cat(dsts), torch.cat(shs), cutoff)


# ============================================================================ evaluation


@dataclass
class Graph:
    """One or many structures as a single graph (device tensors, ready for `evaluate`)."""

    numbers: torch.Tensor
    positions: torch.Tensor
    src: torch.Tensor
    dst: torch.Tensor
    shift_vec: torch.Tensor
    batch: torch.Tensor | None
    edge_batch: torch.Tensor | None
    num_graphs: int
    n_atoms: list


def build_graph(structures, cutoff: float, dtype=torch.float64, device="cpu", nl_device=None) -> Graph:
    """structures: iterable of (numbers, positions, cell, pbc). The neighbour list is built
    in f64 (on `nl_device`, default `device`), then everything moves to `device`/`dtype`."""
    nl_device = nl_device or device
    numbers, positions, src, dst, shift_vec, batch, edge_batch, sizes = [], [], [], [], [], [], [], []
    offset = 0
    for g, (z, r, cell, pbc) in enumerate(structures):
        r64 = torch.as_tensor(r, dtype=torch.float64).reshape(-1, 3)
        nl = neighbor_list(r64, cell, pbc, cutoff, device=nl_device)
        n = r64.shape[0]
        numbers.append(torch.as_tensor(z, dtype=torch.int64).reshape(-1))
        positions.append(r64)
        src.append(nl.src.cpu() + offset)
        dst.append(nl.dst.cpu() + offset)
        shift_vec.append(nl.shift_vec.cpu())
        batch.append(torch.full((n,), g, dtype=torch.int64))
        edge_batch.append(torch.full((len(nl),), g, dtype=torch.int64))
        sizes.append(n)
        offset += n
    to = dict(device=device)
    many = len(sizes) > 1
    return Graph(
        numbers=torch.cat(numbers).to(**to),
        positions=torch.cat(positions).to(dtype=dtype, **to),
        src=torch.cat(src).to(**to),
        dst=torch.cat(dst).to(**to),
        shift_vec=torch.cat(shift_vec).to(dtype=dtype, **to),
        batch=torch.cat(batch).to(**to) if many else None,
        edge_batch=torch.cat(edge_batch).to(**to) if many else None,
        num_graphs=len(sizes),
        n_atoms=sizes,
    )


def check_numbers(model: StudentForceField, numbers: torch.Tensor) -> None:
    if numbers.numel() and (int(numbers.min()) < 1 or int(numbers.max()) > model.max_z):
        raise ValueError(f"atomic numbers must be in 1..{model.max_z}")


def evaluate(model, graph: Graph, positions=None, virial: bool = True, energy_fn=None):
    """Energy per graph, per-atom energies, forces and (per graph) 3x3 virials.

    Forces: autograd of the total energy with respect to positions. Virial:
    W[a][b] = -sum_edges r_ji[a] dE/dr_ji[b], with dE/dr_ji from autograd with respect to
    the edge vectors (an intermediate of the same graph). `energy_fn(numbers, vec, src,
    dst, batch, num_graphs)` replaces `model` (e.g. a torch.compile'd model)."""
    fn = model if energy_fn is None else energy_fn
    pos = (graph.positions if positions is None else positions).detach().requires_grad_(True)
    vec = (pos[graph.src] - pos[graph.dst]) + graph.shift_vec
    graph_energy, atom_energy = fn(graph.numbers, vec, graph.src, graph.dst, graph.batch, graph.num_graphs)
    inputs = [pos, vec] if virial else [pos]
    grads = torch.autograd.grad(graph_energy.sum(), inputs)
    forces = -grads[0]
    w = None
    if virial:
        outer = -(vec.detach()[:, :, None] * grads[1][:, None, :])  # E x 3 x 3
        if graph.edge_batch is None:
            w = outer.sum(0)[None]
        else:
            w = outer.new_zeros(graph.num_graphs, 3, 3).index_add(0, graph.edge_batch, outer)
    return graph_energy.detach(), atom_energy.detach(), forces, w


def compute(model, numbers, positions, cell=None, pbc=None, dtype=torch.float64, device="cpu"):
    """One structure -> dict(energy, atom_energies, forces, virial, edges), python floats."""
    z = torch.as_tensor(numbers, dtype=torch.int64)
    check_numbers(model, z)
    graph = build_graph([(z, positions, cell, pbc)], model.cutoff, dtype=dtype, device=device)
    e, ea, f, w = evaluate(model, graph)
    return dict(energy=float(e[0]), atom_energies=ea.cpu().tolist(), forces=f.cpu().tolist(), virial=w[0].cpu().tolist(), edges=int(graph.src.numel()))


# ============================================================================ checks


def _fd_checks(model, numbers, positions, cell, pbc, h=1e-5):
    """Central finite differences of E against forces (a few atoms) and the virial (strain)."""
    r = torch.as_tensor(positions, dtype=torch.float64)
    c = torch.zeros(3, 3, dtype=torch.float64) if cell is None else torch.as_tensor(cell, dtype=torch.float64)
    base = compute(model, numbers, r, c, pbc)

    def energy(rr, cc):
        return compute(model, numbers, rr, cc, pbc)["energy"]

    err_f = 0.0
    for i in range(min(3, r.shape[0])):
        for a in range(3):
            rp, rm = r.clone(), r.clone()
            rp[i, a] += h
            rm[i, a] -= h
            fd = -(energy(rp, c) - energy(rm, c)) / (2 * h)
            err_f = max(err_f, abs(fd - base["forces"][i][a]))
    err_w = 0.0
    for a in range(3):
        for b in range(3):
            eps = torch.zeros(3, 3, dtype=torch.float64)
            eps[a, b] = h
            ep = energy(r @ (torch.eye(3, dtype=torch.float64) + eps), c @ (torch.eye(3, dtype=torch.float64) + eps))
            em = energy(r @ (torch.eye(3, dtype=torch.float64) - eps), c @ (torch.eye(3, dtype=torch.float64) - eps))
            fd = -(ep - em) / (2 * h)  # W = -dE/d(strain)
            err_w = max(err_w, abs(fd - base["virial"][a][b]))
    return err_f, err_w


def selftest(model=None, verbose=True) -> bool:
    """Neighbour list against brute force; forces and virial against finite differences."""
    torch.manual_seed(0)
    ok = True
    gen = torch.Generator().manual_seed(1234)
    cases = []
    for trial in range(24):
        n = int(torch.randint(1, 12, (1,), generator=gen))
        pbc = [bool(x) for x in torch.randint(0, 2, (3,), generator=gen)]
        cell = torch.eye(3, dtype=torch.float64) * (1.5 + 6 * torch.rand(3, 1, generator=gen, dtype=torch.float64))
        cell += 0.8 * (torch.rand(3, 3, generator=gen, dtype=torch.float64) - 0.5)  # triclinic
        frac = torch.rand(n, 3, generator=gen, dtype=torch.float64) * 3 - 1  # unwrapped
        pos = frac @ cell
        if trial % 5 == 0:  # a zero vector along a non-periodic axis
            for k in range(3):
                if not pbc[k]:
                    cell[k] = 0
        cases.append((pos, cell, pbc))
    for pos, cell, pbc in cases:
        a = neighbor_list(pos, cell, pbc, 3.0)
        b = neighbor_list_bruteforce(pos, cell, pbc, 3.0)
        same = len(a) == len(b) and torch.equal(a.src, b.src) and torch.equal(a.dst, b.dst) and torch.equal(a.shifts, b.shifts)
        ok &= same
        if verbose and not same:
            print(f"neighbour list mismatch: {len(a)} vs {len(b)} edges, pbc={pbc}")
    if verbose:
        print(f"neighbour list vs brute force on {len(cases)} random cells: {'ok' if ok else 'FAILED'}")
    if model is None:
        torch.manual_seed(7)
        model = random_model(16, 3, 8, 4.0, 20, seed=7)
    fd_ok = True
    for pos, cell, pbc in cases[:8]:
        numbers = torch.randint(1, 10, (pos.shape[0],), generator=gen)
        err_f, err_w = _fd_checks(model, numbers, pos, cell, pbc)
        good = err_f < 1e-6 and err_w < 1e-6
        fd_ok &= good
        if verbose:
            print(f"finite differences: n={pos.shape[0]:2d} pbc={pbc} max force err {err_f:.1e}, virial err {err_w:.1e} {'ok' if good else 'FAILED'}")
    return ok and fd_ok


def random_model(hidden=16, blocks=3, num_rbf=8, cutoff=4.0, max_z=20, seed=0) -> StudentForceField:
    """A student with random weights (and non-identity mixing matrices), float64."""
    torch.manual_seed(seed)
    model = StudentForceField(hidden, blocks, num_rbf, cutoff, max_z)
    with torch.no_grad():
        for block in model.interactions:
            block.update.mixing_matrix.copy_(torch.eye(3) + 0.3 * torch.randn(3, 3))
    set_row_invariant(model)
    return model.double().eval()


# ============================================================================ CLI


def _fixture_check(path, models_dir, tol_e, tol_f, device, stems=None):
    data = json.load(open(path))
    worst = {"energy": 0.0, "forces": 0.0, "virial": 0.0, "atom_sum": 0.0}
    ok = True
    for stem, structures in data["models"].items():
        if stems and stem not in stems:
            continue
        model_path = None
        for ext in (".onnx", ".safetensors", ".pt"):
            candidate = os.path.join(models_dir, stem + ext)
            if os.path.exists(candidate):
                model_path = candidate
                break
        if model_path is None:
            print(f"SKIP {stem}: no model file in {models_dir}")
            continue
        model = load_model(model_path, torch.float64, device, row_invariant=True)
        for s in structures:
            out = compute(model, s["numbers"], s["positions"], s["cell"], s["pbc"], device=device)
            de = abs(out["energy"] - s["energy"])
            df = max((abs(a - b) for fa, fb in zip(out["forces"], s["forces"]) for a, b in zip(fa, fb)), default=0.0)
            dw = max(abs(a - b) for wa, wb in zip(out["virial"], s["virial"]) for a, b in zip(wa, wb))
            dsum = abs(sum(out["atom_energies"]) - out["energy"])
            edges_ok = "edges" not in s or s["edges"] == out["edges"]
            good = de <= tol_e and df <= tol_f and dw <= tol_f and edges_ok
            extra = ""
            if "atom_energies" in s:
                da = max(abs(a - b) for a, b in zip(out["atom_energies"], s["atom_energies"]))
                good &= da <= tol_e
                extra = f" dEi={da:.1e}"
            ok &= good
            worst["energy"] = max(worst["energy"], de)
            worst["forces"] = max(worst["forces"], df)
            worst["virial"] = max(worst["virial"], dw)
            worst["atom_sum"] = max(worst["atom_sum"], dsum)
            print(f"{'ok  ' if good else 'FAIL'} {stem:24s} {s['name']:28s} n={len(s['numbers']):5d} edges={out['edges']:7d}/{s.get('edges')} dE={de:.1e} dF={df:.1e} dW={dw:.1e}{extra}")
    print(f"worst: {worst}")
    return ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="PyTorch reference of the MLFF-Distiller student")
    sub = parser.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("eval", help="energy, forces, virial of every frame of an extxyz file")
    e.add_argument("model")
    e.add_argument("input")
    e.add_argument("--dtype", choices=["f64", "f32"], default="f64")
    e.add_argument("--device", default="cpu")
    e.add_argument("--json", help="write results here instead of a summary on stdout")
    c = sub.add_parser("convert", help="write the weights as an mlff safetensors model file")
    c.add_argument("model")
    c.add_argument("output")
    c.add_argument("--provenance", default="")
    c.add_argument("--f64", action="store_true", help="store f64 (default f32)")
    f = sub.add_parser("check-fixtures", help="compare with a fixture file")
    f.add_argument("fixtures")
    f.add_argument("models_dir")
    f.add_argument("--tol-energy", type=float, default=1e-10)
    f.add_argument("--tol-force", type=float, default=1e-10)
    f.add_argument("--device", default="cpu")
    sub.add_parser("selftest", help="neighbour list vs brute force; finite differences")
    args = parser.parse_args(argv)

    if args.cmd == "selftest":
        return 0 if selftest() else 1
    if args.cmd == "check-fixtures":
        return 0 if _fixture_check(args.fixtures, args.models_dir, args.tol_energy, args.tol_force, args.device) else 1
    if args.cmd == "convert":
        model = load_model(args.model)
        provenance = args.provenance or f"converted from {os.path.basename(args.model)} by tools/reference/student_torch.py"
        save_mlff_model(model, args.output, provenance, torch.float64 if args.f64 else torch.float32)
        return 0
    from structures import read_extxyz

    dtype = torch.float64 if args.dtype == "f64" else torch.float32
    model = load_model(args.model, dtype, args.device, row_invariant=True)
    results = []
    for k, s in enumerate(read_extxyz(args.input)):
        out = compute(model, s.numbers, s.positions, s.cell, s.pbc, dtype=dtype, device=args.device)
        results.append(out)
        if not args.json:
            print(f"frame {k}: {len(s)} atoms, {out['edges']} edges, energy {out['energy']:.12f} eV")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
