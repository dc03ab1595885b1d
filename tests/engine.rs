//! Properties of the CPU engine on random models and structures: finite
//! differences, invariances, ghosts, determinism, f32 against f64, and the
//! neighbour list against a brute-force search.

mod common;

use common::{
    cpu_model, random_frame, random_model_file, relative_error, small_config, Frame, Kind,
    ALL_KINDS,
};
use mlff::{Precision, Request, System};

fn energy(model: &mut mlff::Model, frame: &Frame) -> f64 {
    model
        .compute(&frame.system(), &Request::ENERGY)
        .unwrap()
        .energy
}

/// The smallest |d - rc| over all pairs within rc + margin: finite differences
/// across the cutoff would see the model's jump.
fn distance_to_cutoff(frame: &Frame, rc: f64) -> f64 {
    let pairs = mlff::neighbors::brute_force_pairs(
        &frame.positions,
        frame.cell.as_ref(),
        frame.pbc,
        rc + 0.01,
    );
    let zero = [[0.0; 3]; 3];
    let cell = frame.cell.as_ref().unwrap_or(&zero);
    pairs
        .iter()
        .map(|&(i, j, s)| {
            (mlff::neighbors::norm(&mlff::neighbors::pair_vector(
                &frame.positions[i as usize],
                &frame.positions[j as usize],
                s,
                cell,
            )) - rc)
                .abs()
        })
        .fold(1.0, f64::min)
}

#[test]
fn forces_match_finite_differences() {
    let file = random_model_file(&small_config(), 11);
    let mut model = cpu_model(&file, Precision::F64, 2);
    for (t, kind) in ALL_KINDS.iter().enumerate() {
        let frame = random_frame(*kind, 7, 100 + t as u64);
        assert!(
            distance_to_cutoff(&frame, 4.0) > 1e-4,
            "{kind:?}: a pair sits at the cutoff; pick another seed"
        );
        let results = model.compute(&frame.system(), &Request::ALL).unwrap();
        let h = 1e-5;
        let mut max_err = 0.0f64;
        for i in 0..frame.positions.len() {
            for c in 0..3 {
                let mut plus = frame.clone();
                plus.positions[i][c] += h;
                let mut minus = frame.clone();
                minus.positions[i][c] -= h;
                let fd = -(energy(&mut model, &plus) - energy(&mut model, &minus)) / (2.0 * h);
                max_err = max_err.max((fd - results.forces[i][c]).abs());
            }
        }
        eprintln!("{kind:?}: max |F - F_fd| = {max_err:.2e}");
        assert!(
            max_err < 1e-6,
            "{kind:?}: forces differ from finite differences by {max_err}"
        );
    }
}

#[test]
fn virial_matches_strain_derivative() {
    // W[a][b] = -dE/d eps[a][b] under r_b -> r_b + sum_a r_a eps[a][b] (cell rows too).
    let file = random_model_file(&small_config(), 12);
    let mut model = cpu_model(&file, Precision::F64, 2);
    for (t, kind) in ALL_KINDS.iter().enumerate() {
        let frame = random_frame(*kind, 7, 200 + t as u64);
        assert!(distance_to_cutoff(&frame, 4.0) > 1e-4);
        let results = model.compute(&frame.system(), &Request::ALL).unwrap();
        let strained = |a: usize, b: usize, eps: f64| {
            let mut f = frame.clone();
            for r in f.positions.iter_mut() {
                r[b] += r[a] * eps;
            }
            if let Some(cell) = f.cell.as_mut() {
                for row in cell.iter_mut() {
                    row[b] += row[a] * eps;
                }
            }
            f
        };
        let h = 1e-6;
        let mut max_err = 0.0f64;
        for a in 0..3 {
            for b in 0..3 {
                let fd = -(energy(&mut model, &strained(a, b, h))
                    - energy(&mut model, &strained(a, b, -h)))
                    / (2.0 * h);
                max_err = max_err.max((fd - results.virial[a][b]).abs());
            }
        }
        eprintln!(
            "{kind:?}: max |W - W_fd| = {max_err:.2e}, W = {:?}",
            results.virial
        );
        assert!(
            max_err < 1e-5,
            "{kind:?}: virial differs from the strain derivative by {max_err}"
        );
    }
}

#[test]
fn per_atom_quantities_sum_to_totals() {
    let file = random_model_file(&small_config(), 13);
    let mut model = cpu_model(&file, Precision::F64, 2);
    for kind in ALL_KINDS {
        let frame = random_frame(kind, 12, 300);
        let r = model.compute(&frame.system(), &Request::ALL).unwrap();
        let e_sum: f64 = r.atom_energies.iter().sum();
        assert!((e_sum - r.energy).abs() <= 1e-12 * r.energy.abs().max(1.0));
        let mut w_sum = [[0.0; 3]; 3];
        for w in &r.atom_virials {
            for a in 0..3 {
                for b in 0..3 {
                    w_sum[a][b] += w[a][b];
                }
            }
        }
        for a in 0..3 {
            for b in 0..3 {
                assert!(
                    (w_sum[a][b] - r.virial[a][b]).abs() < 1e-10,
                    "{kind:?}: per-atom virials do not sum to the virial"
                );
            }
        }
        // Only the requested outputs are filled.
        let e_only = model.compute(&frame.system(), &Request::ENERGY).unwrap();
        assert!(e_only.forces.is_empty() && e_only.atom_virials.is_empty());
        assert_eq!(e_only.energy, r.energy);
    }
}

#[test]
fn translation_and_permutation() {
    let file = random_model_file(&small_config(), 14);
    let mut model = cpu_model(&file, Precision::F64, 2);
    for kind in ALL_KINDS {
        let frame = random_frame(kind, 10, 400);
        let r = model.compute(&frame.system(), &Request::ALL).unwrap();
        let mut moved = frame.clone();
        for p in moved.positions.iter_mut() {
            p[0] += 1.7;
            p[1] -= 0.3;
            p[2] += 12.9;
        }
        let rm = model.compute(&moved.system(), &Request::ALL).unwrap();
        assert!(
            (rm.energy - r.energy).abs() < 1e-10,
            "{kind:?}: translation changed E by {}",
            rm.energy - r.energy
        );
        assert!(common::max_abs_diff(&rm.forces, &r.forces) < 1e-9);
        // Reverse the atom order.
        let n = frame.numbers.len();
        let perm: Vec<usize> = (0..n).rev().collect();
        let permuted = Frame {
            numbers: perm.iter().map(|&i| frame.numbers[i]).collect(),
            positions: perm.iter().map(|&i| frame.positions[i]).collect(),
            ..frame.clone()
        };
        let rp = model.compute(&permuted.system(), &Request::ALL).unwrap();
        assert!((rp.energy - r.energy).abs() < 1e-10);
        let back: Vec<[f64; 3]> = (0..n).map(|k| rp.forces[n - 1 - k]).collect();
        assert!(
            common::max_abs_diff(&back, &r.forces) < 1e-10,
            "{kind:?}: forces are not permutation equivariant"
        );
    }
}

#[test]
fn ghost_atoms_reproduce_periodic_results() {
    // A periodic box, and the same box as local atoms + explicit image copies out to
    // layers x cutoff (what LAMMPS hands over with n_local).
    let config = small_config();
    let file = random_model_file(&config, 15);
    let mut model = cpu_model(&file, Precision::F64, 2);
    for kind in [Kind::Cubic, Kind::Triclinic, Kind::SmallCell, Kind::Slab] {
        let frame = random_frame(kind, 9, 500);
        let periodic = model.compute(&frame.system(), &Request::ALL).unwrap();
        let cell = frame.cell.unwrap();
        let reach = config.cutoff * config.num_blocks as f64 + 0.5;
        let mut numbers = frame.numbers.clone();
        let mut positions = frame.positions.clone();
        let mut owner: Vec<usize> = (0..frame.numbers.len()).collect();
        let span = |k: usize| if frame.pbc[k] { 6 } else { 0 };
        for s0 in -span(0)..=span(0) {
            for s1 in -span(1)..=span(1) {
                for s2 in -span(2)..=span(2) {
                    if (s0, s1, s2) == (0, 0, 0) {
                        continue;
                    }
                    for (i, r) in frame.positions.iter().enumerate() {
                        let g = mlff::neighbors::pair_vector(&[0.0; 3], r, [s0, s1, s2], &cell);
                        let near = frame.positions.iter().any(|q| {
                            mlff::neighbors::norm(&[g[0] - q[0], g[1] - q[1], g[2] - q[2]]) <= reach
                        });
                        if near {
                            numbers.push(frame.numbers[i]);
                            positions.push(g);
                            owner.push(i);
                        }
                    }
                }
            }
        }
        let n_local = frame.numbers.len();
        let system = System {
            numbers: &numbers,
            positions: &positions,
            cell: None,
            pbc: [false; 3],
            n_local,
        };
        let ghosts = model.compute(&system, &Request::ALL).unwrap();
        assert!(
            (ghosts.energy - periodic.energy).abs() < 1e-10 * periodic.energy.abs().max(1.0),
            "{kind:?}: {} vs {}",
            ghosts.energy,
            periodic.energy
        );
        let mut summed = vec![[0.0; 3]; n_local];
        for (k, f) in ghosts.forces.iter().enumerate() {
            for c in 0..3 {
                summed[owner[k]][c] += f[c];
            }
        }
        let df = common::max_abs_diff(&summed, &periodic.forces);
        assert!(df < 1e-10, "{kind:?}: forces differ by {df}");
        for a in 0..3 {
            for b in 0..3 {
                assert!(
                    (ghosts.virial[a][b] - periodic.virial[a][b]).abs() < 1e-9,
                    "{kind:?}: virial differs"
                );
            }
        }
        assert!(
            ghosts.atom_energies[n_local..].iter().all(|&e| e == 0.0),
            "ghost energies must be 0"
        );
        eprintln!(
            "{kind:?}: {} ghosts, |dE| = {:.1e}, max|dF| = {df:.1e}",
            numbers.len() - n_local,
            (ghosts.energy - periodic.energy).abs()
        );
    }
}

#[test]
fn bitwise_deterministic_across_calls_and_thread_counts() {
    let file = random_model_file(&small_config(), 16);
    for precision in [Precision::F64, Precision::F32] {
        let frame = random_frame(Kind::Cubic, 300, 600);
        let reference = cpu_model(&file, precision, 1)
            .compute(&frame.system(), &Request::ALL)
            .unwrap();
        for threads in [1, 2, 3, 8] {
            let mut model = cpu_model(&file, precision, threads);
            for _ in 0..2 {
                let r = model.compute(&frame.system(), &Request::ALL).unwrap();
                assert_eq!(
                    r, reference,
                    "{precision:?}, {threads} threads: results differ bitwise"
                );
            }
        }
    }
}

#[test]
fn f32_agrees_with_f64() {
    let file = random_model_file(&small_config(), 17);
    let mut m64 = cpu_model(&file, Precision::F64, 2);
    let mut m32 = cpu_model(&file, Precision::F32, 2);
    for (t, kind) in ALL_KINDS.iter().enumerate() {
        for n in [1, 2, 20, 150] {
            let frame = random_frame(*kind, n, 700 + t as u64 * 10 + n as u64);
            let r64 = m64.compute(&frame.system(), &Request::ALL).unwrap();
            let r32 = m32.compute(&frame.system(), &Request::ALL).unwrap();
            let de = (r32.energy - r64.energy).abs() / r64.energy.abs().max(1e-3);
            assert!(de < 1e-5, "{kind:?} n={n}: energy relative error {de}");
            if r64.forces.iter().flatten().any(|f| f.abs() > 0.0) {
                let df = relative_error(&r32.forces, &r64.forces);
                assert!(df < 1e-5, "{kind:?} n={n}: force relative error {df}");
                let w64: Vec<[f64; 3]> = r64.virial.to_vec();
                let dw = relative_error(&r32.virial, &w64);
                assert!(dw < 1e-5, "{kind:?} n={n}: virial relative error {dw}");
            }
        }
    }
}

#[test]
fn f32_agrees_with_f64_on_a_large_box() {
    // Large enough that the f32 path interpolates the filter on demand instead of
    // keeping it per pair (the small systems above take the other path).
    let file = random_model_file(&small_config(), 21);
    let frame = random_frame(Kind::Cubic, 1500, 1000);
    let list =
        mlff::neighbors::build(&frame.positions, frame.cell.as_ref(), frame.pbc, 4.0).unwrap();
    assert!(
        list.n_pairs() * 3 * 16 * 3 * 4 > 8 << 20,
        "the box must exceed the kept-filter budget"
    );
    let r64 = cpu_model(&file, Precision::F64, 2)
        .compute(&frame.system(), &Request::ALL)
        .unwrap();
    let r32 = cpu_model(&file, Precision::F32, 2)
        .compute(&frame.system(), &Request::ALL)
        .unwrap();
    assert!((r32.energy - r64.energy).abs() / r64.energy.abs() < 1e-5);
    let df = relative_error(&r32.forces, &r64.forces);
    assert!(df < 1e-5, "force relative error {df}");
}

#[test]
fn isolated_atoms_and_pairs_at_the_cutoff() {
    let config = small_config();
    let file = random_model_file(&config, 18);
    let mut model = cpu_model(&file, Precision::F64, 2);
    let rc = config.cutoff;
    // Two atoms farther apart than rc: the energy is the sum of two single atoms.
    let single_o = model
        .compute(&System::molecule(&[8], &[[0.0; 3]]), &Request::ALL)
        .unwrap();
    let single_h = model
        .compute(&System::molecule(&[1], &[[0.0; 3]]), &Request::ALL)
        .unwrap();
    assert_eq!(single_o.forces, vec![[0.0; 3]]);
    let far = model
        .compute(
            &System::molecule(&[8, 1], &[[0.0; 3], [rc * 1.5, 0.0, 0.0]]),
            &Request::ALL,
        )
        .unwrap();
    assert_eq!(far.energy, single_o.energy + single_h.energy);
    assert_eq!(far.forces, vec![[0.0; 3]; 2]);
    // d == rc exactly is an edge (d <= rc); a hair beyond is not, and the energy jumps.
    let at = model
        .compute(
            &System::molecule(&[8, 1], &[[0.0; 3], [rc, 0.0, 0.0]]),
            &Request::ALL,
        )
        .unwrap();
    let beyond_x = f64::from_bits(rc.to_bits() + 1);
    let beyond = model
        .compute(
            &System::molecule(&[8, 1], &[[0.0; 3], [beyond_x, 0.0, 0.0]]),
            &Request::ALL,
        )
        .unwrap();
    assert_eq!(beyond.energy, far.energy);
    assert!(
        (at.energy - beyond.energy).abs() > 1e-6,
        "the student's filter is not zero at rc, so the energy must jump"
    );
    assert!(at.forces.iter().flatten().all(|f| f.is_finite()));
    // Periodic: an atom alone in a cell shorter than rc sees its images.
    let cell = [[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0]];
    let crystal = model
        .compute(
            &System::periodic(&[8], &[[0.1, 0.2, 0.3]], cell, [true; 3]),
            &Request::ALL,
        )
        .unwrap();
    assert_ne!(crystal.energy, single_o.energy);
    assert!(
        crystal.forces[0].iter().all(|f| f.abs() < 1e-10),
        "a Bravais lattice has no net force: {:?}",
        crystal.forces
    );
    // CO2: the carbon's vector messages cancel (|v| = 0 there); gradients stay finite.
    let co2 = model
        .compute(
            &System::molecule(
                &[8, 6, 8],
                &[[-1.16, 0.0, 0.0], [0.0, 0.0, 0.0], [1.16, 0.0, 0.0]],
            ),
            &Request::ALL,
        )
        .unwrap();
    assert!(co2.forces.iter().flatten().all(|f| f.is_finite()));
}

#[test]
fn bad_input_is_a_clear_error() {
    let file = random_model_file(&small_config(), 19);
    let mut model = cpu_model(&file, Precision::F64, 1);
    let p = [[0.0; 3], [1.0, 0.0, 0.0]];
    let check = |r: mlff::Result<mlff::Results>, needle: &str| match r {
        Err(mlff::Error::InvalidArgument(m)) => assert!(
            m.contains(needle),
            "message `{m}` should mention `{needle}`"
        ),
        other => panic!("expected InvalidArgument({needle}), got {other:?}"),
    };
    check(
        model.compute(&System::molecule(&[8, 0], &p), &Request::ALL),
        "atom 1",
    );
    check(
        model.compute(&System::molecule(&[8, 150], &p), &Request::ALL),
        "150",
    );
    check(
        model.compute(&System::molecule(&[8, -3], &p), &Request::ALL),
        "-3",
    );
    check(
        model.compute(&System::molecule(&[8, 11], &p), &Request::ALL),
        "11",
    );
    check(
        model.compute(
            &System::molecule(&[8, 1], &[[0.0; 3], [f64::NAN, 0.0, 0.0]]),
            &Request::ALL,
        ),
        "atom 1",
    );
    check(
        model.compute(
            &System::molecule(&[8, 1], &[[0.0; 3], [0.0; 3]]),
            &Request::ALL,
        ),
        "same position",
    );
    check(
        model.compute(
            &System {
                n_local: 3,
                ..System::molecule(&[8, 1], &p)
            },
            &Request::ALL,
        ),
        "n_local",
    );
    check(
        model.compute(&System::molecule(&[8], &p), &Request::ALL),
        "positions",
    );
    let flat = [[3.0, 0.0, 0.0], [6.0, 0.0, 0.0], [0.0, 0.0, 3.0]];
    check(
        model.compute(
            &System::periodic(&[8, 1], &p, flat, [true; 3]),
            &Request::ALL,
        ),
        "singular",
    );
    check(
        model.compute(
            &System {
                pbc: [true, false, false],
                ..System::molecule(&[8, 1], &p)
            },
            &Request::ALL,
        ),
        "without a cell",
    );
    // A cell singular only along an open axis is fine (slab with a zero third vector).
    let slab = [[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 0.0]];
    assert!(model
        .compute(
            &System::periodic(&[8, 1], &p, slab, [true, true, false]),
            &Request::ALL
        )
        .is_ok());
}

#[test]
fn batch_equals_single_calls() {
    let file = random_model_file(&small_config(), 20);
    let mut model = cpu_model(&file, Precision::F32, 2);
    let frames: Vec<Frame> = (0..64)
        .map(|k| random_frame(ALL_KINDS[k % ALL_KINDS.len()], 1 + k % 13, 800 + k as u64))
        .collect();
    let systems: Vec<System> = frames.iter().map(|f| f.system()).collect();
    let batch = model.compute_batch(&systems, &Request::ALL).unwrap();
    for (k, system) in systems.iter().enumerate() {
        assert_eq!(
            batch[k],
            model.compute(system, &Request::ALL).unwrap(),
            "system {k}"
        );
    }
}

#[test]
fn forces_into_a_caller_buffer_equal_compute() {
    let file = random_model_file(&small_config(), 21);
    let mut model = cpu_model(&file, Precision::F64, 2);
    for (k, kind) in ALL_KINDS.iter().enumerate() {
        let frame = random_frame(*kind, 3 + 7 * k, 900 + k as u64);
        let system = frame.system();
        let want = model.compute(&system, &Request::ALL).unwrap();
        let mut forces = vec![[f64::NAN; 3]; system.n_atoms()];
        let got = model
            .compute_forces_into(&system, &Request::ALL, &mut forces)
            .unwrap();
        assert!(forces == want.forces, "{kind:?}: forces differ");
        assert!(got.forces.is_empty(), "{kind:?}: forces also returned");
        assert_eq!((got.energy, got.virial), (want.energy, want.virial));
        // Without forces in the request the buffer is not written.
        let mut untouched = vec![[7.0; 3]; system.n_atoms()];
        model
            .compute_forces_into(&system, &Request::ENERGY, &mut untouched)
            .unwrap();
        assert!(untouched.iter().all(|r| *r == [7.0; 3]), "{kind:?}");
    }
}

#[test]
fn batch_forces_into_caller_buffers_equal_compute_batch() {
    let file = random_model_file(&small_config(), 22);
    let mut model = cpu_model(&file, Precision::F64, 2);
    let frames: Vec<Frame> = ALL_KINDS
        .iter()
        .enumerate()
        .map(|(k, kind)| random_frame(*kind, 3 + 5 * k, 950 + k as u64))
        .collect();
    let systems: Vec<System> = frames.iter().map(|f| f.system()).collect();
    common::check_batch_forces_into(&mut model, &systems, "cpu");
}

/// The list of `frame` with cutoff `rc` holds exactly the brute-force pairs, ordered by
/// first atom, its CSR groups each pair's two edges by destination, and each atom's
/// edges are in the canonical order.
fn check_list_against_brute_force(frame: &Frame, rc: f64, label: &str) {
    let n = frame.positions.len();
    let list =
        mlff::neighbors::build(&frame.positions, frame.cell.as_ref(), frame.pbc, rc).unwrap();
    let mut got: Vec<(u32, u32, [i32; 3])> = (0..list.n_pairs())
        .map(|p| (list.pair_i[p], list.pair_j[p], list.pair_shift[p]))
        .collect();
    got.sort();
    let expected =
        mlff::neighbors::brute_force_pairs(&frame.positions, frame.cell.as_ref(), frame.pbc, rc);
    assert_eq!(got, expected, "{label}, n = {n}, rc = {rc}");
    // Pairs are ordered by their first atom: the CUDA pair_backward kernel splits its
    // work between CTAs by pair index and finds each share's atoms through pair_i.
    assert!(
        list.pair_i.windows(2).all(|w| w[0] <= w[1]),
        "{label}, n = {n}: pair_i is not non-decreasing"
    );
    assert!((0..list.n_pairs()).all(|p| list.pair_i[p] <= list.pair_j[p]));
    // The CSR holds each pair twice, grouped by destination.
    assert_eq!(list.n_edges(), 2 * list.n_pairs());
    for i in 0..n {
        for e in list.edge_offsets[i]..list.edge_offsets[i + 1] {
            let p = list.edge_pair[e] as usize;
            let dst = if list.edge_forward[e] {
                list.pair_i[p]
            } else {
                list.pair_j[p]
            };
            assert_eq!(dst as usize, i);
        }
        // Each atom's edges in the canonical order: by distance, then pair, then the
        // forward edge of a self-image pair first (what makes atoms related by a
        // symmetry sum in the same order).
        let key = |e: usize| {
            let p = list.edge_pair[e] as usize;
            let d = mlff::neighbors::norm(&list.pair_vector[p]);
            (d, p, !list.edge_forward[e])
        };
        for e in list.edge_offsets[i] + 1..list.edge_offsets[i + 1] {
            let (a, b) = (key(e - 1), key(e));
            assert!(
                a.0 < b.0 || (a.0 == b.0 && (a.1, a.2) < (b.1, b.2)),
                "{label}, n = {n}: edges {} and {e} of atom {i} out of order",
                e - 1
            );
        }
    }
}

#[test]
fn neighbor_list_matches_brute_force() {
    for (t, kind) in ALL_KINDS.iter().enumerate() {
        for (n, rc) in [(1, 4.0), (5, 4.0), (40, 3.0), (80, 5.5)] {
            let frame = random_frame(*kind, n, 900 + t as u64 * 100 + n as u64);
            check_list_against_brute_force(&frame, rc, &format!("{kind:?}"));
        }
    }
}

#[test]
fn neighbor_list_matches_brute_force_on_its_parallel_paths() {
    // From 96 atoms the pair search runs in parallel; from 8192 atoms (and 32768 edges)
    // the binning and the edge sort too (src/neighbors/mod.rs).
    for (t, kind) in [Kind::Cubic, Kind::Triclinic, Kind::Slab, Kind::Molecule]
        .into_iter()
        .enumerate()
    {
        let frame = random_frame(kind, 200, 4000 + t as u64);
        check_list_against_brute_force(&frame, 5.0, &format!("{kind:?}"));
    }
    // Open boundaries keep the brute force at n^2 / 2 distances.
    let frame = random_frame(Kind::Molecule, 9000, 4100);
    let list =
        mlff::neighbors::build(&frame.positions, frame.cell.as_ref(), frame.pbc, 5.0).unwrap();
    assert!(
        list.n_edges() >= 32768,
        "the large case must reach the parallel edge sort ({} edges)",
        list.n_edges()
    );
    check_list_against_brute_force(&frame, 5.0, "Molecule");
}

#[test]
fn neighbor_list_decides_exactly_at_the_cutoff() {
    // Points on a line so that distances are exact in f64.
    let positions = [
        [0.0, 0.0, 0.0],
        [2.5, 0.0, 0.0],
        [5.0, 0.0, 0.0],
        [f64::from_bits(7.5f64.to_bits() + 1), 0.0, 0.0],
    ];
    let list = mlff::neighbors::build(&positions, None, [false; 3], 2.5).unwrap();
    let pairs: Vec<(u32, u32)> = (0..list.n_pairs())
        .map(|p| (list.pair_i[p], list.pair_j[p]))
        .collect();
    assert_eq!(pairs, vec![(0, 1), (1, 2)]);
    // Periodic: an atom at distance exactly rc from its own image (cell length == rc).
    let cell = [[2.5, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 10.0]];
    let list = mlff::neighbors::build(&[[0.3, 0.0, 0.0]], Some(&cell), [true; 3], 2.5).unwrap();
    assert_eq!(list.n_pairs(), 1);
    assert_eq!(list.pair_shift[0], [1, 0, 0]);
}

/// `random_frame` skips its exact closeness check (a brute-force image search) where
/// `ImageBound` proves two atoms farther apart than 0.9 Å; that is only sound if the
/// bound never exceeds the distance to the nearest image.
#[test]
fn random_frame_image_bound_never_exceeds_the_nearest_image() {
    let mut rng = mlff::model::random::SplitMix64(4242);
    for kind in ALL_KINDS {
        let frame = random_frame(kind, 20, 77);
        let bound = common::ImageBound::new(frame.cell.as_ref(), frame.pbc);
        let zero = [[0.0; 3]; 3];
        let cell = frame.cell.as_ref().unwrap_or(&zero);
        let span = |k: usize| if frame.pbc[k] { 3 } else { 0 };
        let mut tight = 0;
        for _ in 0..2000 {
            let scale = 8.0 * rng.uniform();
            let d = [
                scale * (2.0 * rng.uniform() - 1.0),
                scale * (2.0 * rng.uniform() - 1.0),
                scale * (2.0 * rng.uniform() - 1.0),
            ];
            let mut nearest = f64::INFINITY;
            for m0 in -span(0)..=span(0) {
                for m1 in -span(1)..=span(1) {
                    for m2 in -span(2)..=span(2) {
                        let m = [m0 as f64, m1 as f64, m2 as f64];
                        let image: Vec<f64> = (0..3)
                            .map(|a| d[a] + (0..3).map(|k| m[k] * cell[k][a]).sum::<f64>())
                            .collect();
                        nearest =
                            nearest.min(mlff::neighbors::norm(&[image[0], image[1], image[2]]));
                    }
                }
            }
            let b = bound.lower_bound(&d);
            assert!(
                b <= nearest * (1.0 + 1e-12) + 1e-12,
                "{kind:?}: bound {b} > nearest image {nearest} for d = {d:?}"
            );
            if b >= 0.5 * nearest {
                tight += 1;
            }
        }
        // Useful, not just sound: mostly within a factor of two of the distance.
        assert!(
            tight > 1000,
            "{kind:?}: the bound is loose ({tight} of 2000 within 2x)"
        );
    }
}
