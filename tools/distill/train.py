"""Train a schnetpack 2.2 PaiNN student on teacher-labelled water frames.

Plain PyTorch loop (no Lightning / hydra): own periodic neighbour list
(neighbors.py), schnetpack's own modules for the model, energy + force +
stress loss, Adam with a wall-clock cosine schedule, EMA of the weights.

Energy offset: the teacher energy per atom is large (~ -4.8 eV/atom) and all
frames have the same composition, so a per-element reference is not
identifiable; we subtract the training-set mean energy per atom (mu) from the
targets and put it back with schnetpack's own postprocessor
    spk.transform.AddOffsets("energy", add_mean=True, is_extensive=True,
                             property_mean=mu)
i.e. E_total = E_model + mu * n_atoms.  During training the model runs with
do_postprocessing=False; the saved model has do_postprocessing=True.

Outputs in --out: student_water_painn.pt (torch.save of the module),
student_water_painn_state.pt ({"hyperparameters", "state_dict"}),
errors.json (held-out errors), curve.csv and curve.png.
"""
from __future__ import annotations

import argparse
import csv
import glob
import json
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from neighbors import neighbor_list  # noqa: E402

T_START = time.time()
EV_A3_TO_GPA = 160.21766208


def say(msg):
    print(f"[train {time.time() - T_START:7.1f}s] {msg}", flush=True)


def voigt_to_3x3(s):
    # ASE Voigt order xx yy zz yz xz xy
    out = np.empty(s.shape[:-1] + (3, 3), dtype=s.dtype)
    out[..., 0, 0], out[..., 1, 1], out[..., 2, 2] = s[..., 0], s[..., 1], s[..., 2]
    out[..., 1, 2] = out[..., 2, 1] = s[..., 3]
    out[..., 0, 2] = out[..., 2, 0] = s[..., 4]
    out[..., 0, 1] = out[..., 1, 0] = s[..., 5]
    return out


def load_frames(data_dir):
    files = sorted(glob.glob(os.path.join(data_dir, "labelled_*.npz")))
    if not files:
        raise FileNotFoundError(f"no labelled_*.npz in {data_dir}")
    keys = ("positions", "cell", "energy", "forces", "stress", "traj", "step", "phase", "temp")
    parts = {k: [] for k in keys}
    numbers, names = None, None
    for f in files:
        d = np.load(f)
        if numbers is None:
            numbers, names = d["numbers"], [str(x) for x in d["traj_names"]]
            load_frames.metas = json.loads(str(d["traj_meta"])) if "traj_meta" in d.files else []
        assert (d["numbers"] == numbers).all()
        assert [str(x) for x in d["traj_names"]] == names
        for k in keys:
            parts[k].append(d[k])
    data = {k: np.concatenate(v) for k, v in parts.items()}
    return numbers.astype(np.int64), names, data


def split_frames(data, test_frac):
    """Held-out set = the last `test_frac` of every trajectory (by step): less
    correlated with the training frames than a random split."""
    test = []
    for t in np.unique(data["traj"]):
        idx = np.nonzero(data["traj"] == t)[0]
        idx = idx[np.argsort(data["step"][idx], kind="stable")]
        n_test = int(math.ceil(test_frac * len(idx))) if len(idx) > 1 else 0
        if n_test:
            test.extend(idx[-n_test:].tolist())
    test = np.array(sorted(test), dtype=np.int64)
    train = np.setdiff1d(np.arange(len(data["energy"])), test)
    return train, test


def build_model(hp):
    import schnetpack as spk
    rep = spk.representation.PaiNN(
        n_atom_basis=hp["n_atom_basis"], n_interactions=hp["n_interactions"],
        radial_basis=spk.nn.GaussianRBF(n_rbf=hp["n_rbf"], cutoff=hp["cutoff"]),
        cutoff_fn=spk.nn.CosineCutoff(hp["cutoff"]))
    model = spk.model.NeuralNetworkPotential(
        representation=rep,
        input_modules=[spk.atomistic.Strain(), spk.atomistic.PairwiseDistances()],  # Strain first (see README)
        output_modules=[
            spk.atomistic.Atomwise(n_in=hp["n_atom_basis"], output_key="energy"),
            spk.atomistic.Forces(energy_key="energy", force_key="forces",
                                 stress_key="stress", calc_stress=True)],
        postprocessors=[spk.transform.AddOffsets(
            "energy", add_mean=True, add_atomrefs=False, is_extensive=True,
            property_mean=torch.tensor([hp["energy_mean_per_atom"]], dtype=torch.float32))],
    )
    return model


class Frames:
    """All frames on one device, with precomputed neighbour lists."""

    def __init__(self, numbers, data, device, cutoff):
        self.device = device
        self.n = len(numbers)
        self.Z = torch.tensor(numbers, device=device)
        self.R = torch.tensor(data["positions"], dtype=torch.float32, device=device)
        self.cell = torch.tensor(data["cell"], dtype=torch.float32, device=device)
        self.E = torch.tensor(data["energy"], dtype=torch.float64, device=device)
        self.F = torch.tensor(data["forces"], dtype=torch.float32, device=device)
        self.S = torch.tensor(voigt_to_3x3(data["stress"]), dtype=torch.float32, device=device)
        self.nl = []
        cell64 = torch.tensor(data["cell"], dtype=torch.float64, device=device)
        R64 = torch.tensor(data["positions"], dtype=torch.float64, device=device)
        for k in range(len(data["energy"])):
            i, j, off = neighbor_list(R64[k], cell64[k], cutoff)
            self.nl.append((i, j, off.float()))

    def batch(self, idx, mu):
        n, dev = self.n, self.device
        B = len(idx)
        it = torch.as_tensor(idx, device=dev)
        ii, jj, oo = [], [], []
        for b, k in enumerate(idx):
            i, j, off = self.nl[k]
            ii.append(i + b * n)
            jj.append(j + b * n)
            oo.append(off)
        inputs = {
            "_atomic_numbers": self.Z.repeat(B),
            "_positions": self.R[it].reshape(-1, 3).clone(),
            "_cell": self.cell[it].clone(),
            "_pbc": torch.ones(B, 3, dtype=torch.bool, device=dev),
            "_idx_i": torch.cat(ii), "_idx_j": torch.cat(jj), "_offsets": torch.cat(oo),
            "_n_atoms": torch.full((B,), n, dtype=torch.long, device=dev),
            "_idx_m": torch.arange(B, device=dev).repeat_interleave(n),
        }
        target = {
            "e_atom": ((self.E[it] - mu * n) / n).float(),  # de-meaned energy per atom
            "forces": self.F[it].reshape(-1, 3),
            "stress": self.S[it],
        }
        return inputs, target


class EMA:
    def __init__(self, model, decay):
        self.decay = decay
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.shadow = [p.detach().clone() for p in self.params]
        self.n = 0

    @torch.no_grad()
    def update(self):
        self.n += 1
        d = min(self.decay, (1 + self.n) / (10 + self.n))
        torch._foreach_mul_(self.shadow, d)
        torch._foreach_add_(self.shadow, [p.detach() for p in self.params], alpha=1 - d)

    @torch.no_grad()
    def swap(self):
        for p, s in zip(self.params, self.shadow):
            tmp = p.detach().clone()
            p.copy_(s)
            s.copy_(tmp)


def evaluate(model, frames, idx, mu, bs):
    """Errors of the model (do_postprocessing=False) on frames idx, in meV units."""
    model.eval()
    se = ae = 0.0
    sf = af = 0.0
    ss = as_ = 0.0
    ne = nf = ns = 0
    for s in range(0, len(idx), bs):
        inputs, tgt = frames.batch(idx[s:s + bs], mu)
        out = model(inputs)
        de = (out["energy"].detach() / frames.n - tgt["e_atom"]).double()
        df = (out["forces"].detach() - tgt["forces"]).double()
        ds = (out["stress"].detach() - tgt["stress"]).double()
        se += float((de ** 2).sum()); ae += float(de.abs().sum()); ne += de.numel()
        sf += float((df ** 2).sum()); af += float(df.abs().sum()); nf += df.numel()
        ss += float((ds ** 2).sum()); as_ += float(ds.abs().sum()); ns += ds.numel()
    model.train()
    return {
        "n_frames": int(len(idx)),
        "energy_mae_meV_per_atom": 1e3 * ae / ne, "energy_rmse_meV_per_atom": 1e3 * math.sqrt(se / ne),
        "forces_mae_meV_per_A": 1e3 * af / nf, "forces_rmse_meV_per_A": 1e3 * math.sqrt(sf / nf),
        "stress_mae_meV_per_A3": 1e3 * as_ / ns, "stress_rmse_meV_per_A3": 1e3 * math.sqrt(ss / ns),
        "stress_mae_GPa": EV_A3_TO_GPA * as_ / ns, "stress_rmse_GPa": EV_A3_TO_GPA * math.sqrt(ss / ns),
    }


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="folder with labelled_*.npz")
    ap.add_argument("--out", required=True)
    ap.add_argument("--time-budget", type=float, default=420.0, help="s of training steps")
    ap.add_argument("--max-epochs", type=int, default=100000)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=8e-4)
    ap.add_argument("--lr-min-frac", type=float, default=0.02)
    ap.add_argument("--warmup-steps", type=int, default=300)
    ap.add_argument("--w-energy", type=float, default=200.0, help="(eV/atom)^-2")
    ap.add_argument("--w-forces", type=float, default=1.0, help="(eV/A)^-2")
    ap.add_argument("--w-stress", type=float, default=2000.0, help="(eV/A^3)^-2")
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--clip", type=float, default=10.0)
    ap.add_argument("--test-frac", type=float, default=0.1)
    ap.add_argument("--eval-every", type=float, default=30.0, help="s")
    ap.add_argument("--ckpt-every", type=float, default=120.0, help="s")
    ap.add_argument("--eval-frames", type=int, default=96)
    ap.add_argument("--n-atom-basis", type=int, default=128)
    ap.add_argument("--n-interactions", type=int, default=3)
    ap.add_argument("--n-rbf", type=int, default=20)
    ap.add_argument("--cutoff", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    dev = torch.device(args.device if (args.device != "cuda" or torch.cuda.is_available()) else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    os.makedirs(args.out, exist_ok=True)

    numbers, names, data = load_frames(args.data)
    n_at = len(numbers)
    train_idx, test_idx = split_frames(data, args.test_frac)
    mu = float((data["energy"][train_idx] / n_at).mean())
    say(f"{len(data['energy'])} frames of {n_at} atoms from {len(names)} trajectories; "
        f"train {len(train_idx)}, held-out {len(test_idx)}; mean E/atom {mu:.6f} eV; device {dev}")
    t0 = time.time()
    frames = Frames(numbers, data, dev, args.cutoff)
    npairs = np.mean([len(x[0]) for x in frames.nl])
    say(f"neighbour lists in {time.time() - t0:.1f}s, {npairs:.0f} pairs/frame")

    hp = {
        "architecture": "schnetpack.model.NeuralNetworkPotential",
        "schnetpack_version": __import__("schnetpack").__version__,
        "representation": {"type": "schnetpack.representation.PaiNN",
                           "n_atom_basis": args.n_atom_basis, "n_interactions": args.n_interactions,
                           "shared_interactions": False, "shared_filters": False,
                           "activation": "silu", "epsilon": 1e-8},
        "radial_basis": {"type": "schnetpack.nn.GaussianRBF", "n_rbf": args.n_rbf,
                         "cutoff": args.cutoff, "start": 0.0, "trainable": False},
        "cutoff_fn": {"type": "schnetpack.nn.CosineCutoff", "cutoff": args.cutoff},
        "input_modules": ["schnetpack.atomistic.Strain", "schnetpack.atomistic.PairwiseDistances"],
        "output_modules": [
            {"type": "schnetpack.atomistic.Atomwise", "n_in": args.n_atom_basis, "n_out": 1,
             "n_hidden": None, "n_layers": 2, "activation": "silu", "aggregation_mode": "sum",
             "output_key": "energy"},
            {"type": "schnetpack.atomistic.Forces", "calc_forces": True, "calc_stress": True,
             "energy_key": "energy", "force_key": "forces", "stress_key": "stress"}],
        "postprocessors": [{"type": "schnetpack.transform.AddOffsets", "property": "energy",
                            "add_mean": True, "add_atomrefs": False, "is_extensive": True,
                            "buffer": "postprocessors.0.mean"}],
        # n_atom_basis etc. at top level too, for simple converters
        "n_atom_basis": args.n_atom_basis, "n_interactions": args.n_interactions,
        "n_rbf": args.n_rbf, "cutoff": args.cutoff,
        "energy_mean_per_atom": mu,
        "energy_formula": "E = sum_i atomwise_i + energy_mean_per_atom * n_atoms",
        "elements": sorted(set(int(z) for z in numbers)),
        "units": {"energy": "eV", "length": "Angstrom", "forces": "eV/Angstrom",
                  "stress": "eV/Angstrom^3, (1/V) dE/dstrain (ASE sign)"},
        "dtype": "float32",
        "teacher": "SevenNet-0 (sevenn 0.13.0, checkpoint SevenNet_0__11Jul2024), PBE level",
        "training": {k: v for k, v in vars(args).items() if k not in ("data", "out", "device")},
    }
    model = build_model(hp).to(dev)
    model.do_postprocessing = False
    n_par = sum(p.numel() for p in model.parameters())
    say(f"model: {n_par} parameters")
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    ema = EMA(model, args.ema)
    eval_sub = test_idx if len(test_idx) <= args.eval_frames else \
        test_idx[np.linspace(0, len(test_idx) - 1, args.eval_frames).round().astype(int)]

    curve_path = os.path.join(args.out, "curve.csv")
    curve_f = open(curve_path, "w", newline="")
    cw = csv.writer(curve_f)
    cw.writerow(["time_s", "step", "epoch", "lr", "train_loss", "train_e_rmse_meV_atom",
                 "train_f_rmse_meV_A", "train_s_rmse_meV_A3", "heldout_e_mae_meV_atom",
                 "heldout_f_mae_meV_A", "heldout_f_rmse_meV_A", "heldout_s_mae_meV_A3"])

    def save_state(path, tag):
        sd = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        torch.save({"hyperparameters": hp, "state_dict": sd, "tag": tag}, path)

    budget = args.time_budget
    t_train0 = time.time()
    last_eval = last_ckpt = t_train0
    step = epoch = 0
    acc = torch.zeros(4, device=dev, dtype=torch.float64)
    acc_n = 0
    stop = False
    lr = args.lr
    model.train()
    while not stop and epoch < args.max_epochs:
        perm = rng.permutation(train_idx)
        nb = len(perm) // args.batch_size if len(perm) >= args.batch_size else 1
        for b in range(nb):
            el = time.time() - t_train0
            if el >= budget:
                stop = True
                break
            frac = el / budget
            lr = args.lr * (args.lr_min_frac + (1 - args.lr_min_frac) * 0.5 * (1 + math.cos(math.pi * frac)))
            lr *= min(1.0, (step + 1) / args.warmup_steps)
            for g in opt.param_groups:
                g["lr"] = lr
            inputs, tgt = frames.batch(perm[b * args.batch_size:(b + 1) * args.batch_size].tolist(), mu)
            out = model(inputs)
            le = torch.mean((out["energy"] / n_at - tgt["e_atom"]) ** 2)
            lf = torch.mean((out["forces"] - tgt["forces"]) ** 2)
            ls = torch.mean((out["stress"] - tgt["stress"]) ** 2)
            loss = args.w_energy * le + args.w_forces * lf + args.w_stress * ls
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if args.clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
            ema.update()
            step += 1
            acc += torch.stack([loss.detach(), le.detach(), lf.detach(), ls.detach()]).double()
            acc_n += 1
            now = time.time()
            if now - last_eval >= args.eval_every or step == 1:
                a = (acc / max(acc_n, 1)).tolist()
                if not all(math.isfinite(x) for x in a):
                    raise FloatingPointError(f"non-finite loss at step {step}: {a}")
                ema.swap()
                ev = evaluate(model, frames, eval_sub.tolist(), mu, args.batch_size) if len(eval_sub) else {}
                ema.swap()
                cw.writerow([f"{now - t_train0:.1f}", step, epoch, f"{lr:.3e}", f"{a[0]:.5g}",
                             f"{1e3 * math.sqrt(a[1]):.3f}", f"{1e3 * math.sqrt(a[2]):.2f}",
                             f"{1e3 * math.sqrt(a[3]):.4f}",
                             f"{ev.get('energy_mae_meV_per_atom', float('nan')):.3f}",
                             f"{ev.get('forces_mae_meV_per_A', float('nan')):.2f}",
                             f"{ev.get('forces_rmse_meV_per_A', float('nan')):.2f}",
                             f"{ev.get('stress_mae_meV_per_A3', float('nan')):.4f}"])
                curve_f.flush()
                say(f"step {step} ep {epoch} lr {lr:.2e} loss {a[0]:.4g} | train rmse E "
                    f"{1e3 * math.sqrt(a[1]):.2f} meV/at F {1e3 * math.sqrt(a[2]):.1f} meV/A | "
                    f"held-out(EMA, {len(eval_sub)}) E mae {ev.get('energy_mae_meV_per_atom', float('nan')):.2f} "
                    f"F mae {ev.get('forces_mae_meV_per_A', float('nan')):.1f} rmse "
                    f"{ev.get('forces_rmse_meV_per_A', float('nan')):.1f} S mae "
                    f"{ev.get('stress_mae_GPa', float('nan')):.3f} GPa "
                    f"[{(now - t_train0) / max(step, 1) * 1e3:.0f} ms/step]")
                acc.zero_(); acc_n = 0
                last_eval = time.time()
            if now - last_ckpt >= args.ckpt_every:
                ema.swap()
                save_state(os.path.join(args.out, "student_water_painn_state.pt"), f"partial step {step}")
                ema.swap()
                last_ckpt = time.time()
        else:
            epoch += 1
    train_s = time.time() - t_train0
    say(f"training stopped after {step} steps, {epoch} epochs, {train_s:.0f}s")

    ema.swap()  # final weights = EMA
    res = {"heldout": evaluate(model, frames, test_idx.tolist(), mu, args.batch_size) if len(test_idx) else {}}
    tr_sub = train_idx[np.linspace(0, len(train_idx) - 1, min(len(train_idx), max(len(test_idx), 1))).round().astype(int)]
    res["train_subset"] = evaluate(model, frames, tr_sub.tolist(), mu, args.batch_size)
    # per-temperature/trajectory held-out force errors
    per = {}
    for t in np.unique(data["traj"][test_idx]) if len(test_idx) else []:
        sel = test_idx[data["traj"][test_idx] == t]
        e = evaluate(model, frames, sel.tolist(), mu, args.batch_size)
        per[names[int(t)]] = {k: e[k] for k in ("n_frames", "energy_mae_meV_per_atom",
                                                "forces_mae_meV_per_A", "forces_rmse_meV_per_A",
                                                "stress_mae_GPa")}
    res["heldout_by_trajectory"] = per
    metas = getattr(load_frames, "metas", [])
    core = [k for k, m in enumerate(metas) if 299 <= m["temp"] <= 401 and m["scale"] == 1.0]
    sel = test_idx[np.isin(data["traj"][test_idx], core)] if len(test_idx) else test_idx
    if len(sel):
        res["heldout_300_400K_unstrained"] = evaluate(model, frames, sel.tolist(), mu, args.batch_size)
        say("held-out 300-400 K, unstrained: " + json.dumps(res["heldout_300_400K_unstrained"]))
    res.update(steps=step, epochs=epoch, train_seconds=train_s, n_train=int(len(train_idx)),
               n_heldout=int(len(test_idx)), parameters=n_par, energy_mean_per_atom=mu,
               split="held-out = last 10% (by MD step) of every teacher trajectory",
               weights="EMA", device=str(dev),
               gpu=torch.cuda.get_device_name(0) if dev.type == "cuda" else None)
    hp["result"] = {k: res[k] for k in ("steps", "epochs", "n_train", "n_heldout")}
    say("held-out: " + json.dumps(res["heldout"]))

    # save: the module (postprocessing on) and the state-dict fallback
    model.do_postprocessing = True
    model.eval()
    model = model.cpu()
    pt = os.path.join(args.out, "student_water_painn.pt")
    torch.save(model, pt)
    save_state(os.path.join(args.out, "student_water_painn_state.pt"), "final (EMA)")
    # check the saved module reproduces the teacher's total energy on one held-out frame
    chk_idx = int(test_idx[0]) if len(test_idx) else int(train_idx[0])
    m2 = torch.load(pt, weights_only=False)
    cpu_frames = Frames(numbers, {k: v[chk_idx:chk_idx + 1] for k, v in data.items()}, torch.device("cpu"), args.cutoff)
    inputs, _ = cpu_frames.batch([0], mu)
    o = m2(inputs)
    e_s, e_t = float(o["energy"][0]), float(data["energy"][chk_idx])
    res["saved_model_check"] = {"frame": chk_idx, "student_energy_eV": e_s, "teacher_energy_eV": e_t,
                                "diff_meV_per_atom": 1e3 * (e_s - e_t) / n_at,
                                "student_stress_eV_A3": o["stress"][0].detach().tolist()}
    say(f"reloaded {pt}: E student {e_s:.4f} teacher {e_t:.4f} eV ({1e3 * (e_s - e_t) / n_at:.2f} meV/atom)")
    with open(os.path.join(args.out, "errors.json"), "w") as fh:
        json.dump(res, fh, indent=1)
    curve_f.close()
    try:
        plot_curve(curve_path, os.path.join(args.out, "curve.png"))
    except Exception as exc:
        say(f"plot failed: {exc}")
    say("done")


def plot_curve(csv_path, png_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    d = pd.read_csv(csv_path)
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ax[0].semilogy(d.time_s, d.train_f_rmse_meV_A, label="train F rmse (running)")
    ax[0].semilogy(d.time_s, d.heldout_f_mae_meV_A, label="held-out F MAE (EMA)")
    ax[0].semilogy(d.time_s, d.heldout_f_rmse_meV_A, label="held-out F RMSE (EMA)")
    ax[0].axhline(50, color="k", ls=":", lw=1)
    ax[0].set_xlabel("training time / s"); ax[0].set_ylabel("meV/Å"); ax[0].legend()
    ax[1].semilogy(d.time_s, d.train_e_rmse_meV_atom, label="train E rmse (running)")
    ax[1].semilogy(d.time_s, d.heldout_e_mae_meV_atom, label="held-out E MAE (EMA)")
    ax[1].axhline(2, color="k", ls=":", lw=1)
    ax[1].set_xlabel("training time / s"); ax[1].set_ylabel("meV/atom"); ax[1].legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)


if __name__ == "__main__":
    main()
