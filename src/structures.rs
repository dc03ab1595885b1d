//! Deterministic test and benchmark structures (the same in every run for a seed).

use crate::model::random::SplitMix64;

/// An owned structure.
#[derive(Debug, Clone, PartialEq)]
pub struct Structure {
    pub numbers: Vec<i32>,
    pub positions: Vec<[f64; 3]>,
    pub cell: Option<[[f64; 3]; 3]>,
    pub pbc: [bool; 3],
}

impl Structure {
    pub fn system(&self) -> crate::System<'_> {
        crate::System {
            numbers: &self.numbers,
            positions: &self.positions,
            cell: self.cell,
            pbc: self.pbc,
            n_local: self.numbers.len(),
        }
    }
}

/// Volume per molecule at 1 g/cm³: 18.015 amu / (1 g/cm³) in Å³.
const VOLUME_PER_MOLECULE: f64 = 18.015 * 1.660_539_066_60;
const OH: f64 = 0.9572;
const HOH_DEGREES: f64 = 104.52;
const MIN_INTERMOLECULAR: f64 = 1.6;

/// Liquid water at `density` g/cm³ in a periodic cube: `n_molecules` molecules
/// spread over a cubic grid, each randomly oriented (O-H 0.9572 Å, HOH 104.52°),
/// rejecting orientations that bring atoms of different molecules closer than 1.6 Å.
pub fn water_box(n_molecules: usize, density: f64, seed: u64) -> Structure {
    let n_molecules = n_molecules.max(1);
    let length = (n_molecules as f64 * VOLUME_PER_MOLECULE / density).cbrt();
    let m = (n_molecules as f64).cbrt().ceil() as usize;
    let m = if m * m * m < n_molecules { m + 1 } else { m };
    let spacing = length / m as f64;
    let half = HOH_DEGREES.to_radians() / 2.0;
    let template = [
        [0.0, 0.0, 0.0],
        [OH * half.sin(), OH * half.cos(), 0.0],
        [-OH * half.sin(), OH * half.cos(), 0.0],
    ];
    let mut rng = SplitMix64(seed);
    // Spread the occupied sites over the grid instead of filling it in order.
    let n_sites = m * m * m;
    let sites: Vec<usize> = (0..n_molecules)
        .map(|k| k * n_sites / n_molecules)
        .collect();
    let mut grid: Vec<Option<usize>> = vec![None; n_sites];
    let mut positions: Vec<[f64; 3]> = Vec::with_capacity(3 * n_molecules);
    let minimum_image = |d: f64| d - length * (d / length).round();
    for (k, &site) in sites.iter().enumerate() {
        let (i, j, l) = (site / (m * m), (site / m) % m, site % m);
        let centre = [
            (i as f64 + 0.5) * spacing,
            (j as f64 + 0.5) * spacing,
            (l as f64 + 0.5) * spacing,
        ];
        let mut best: Option<(f64, [[f64; 3]; 3])> = None;
        for _attempt in 0..50 {
            let rotation = random_rotation(&mut rng);
            let atoms = template.map(|t| {
                let r = rotate(&rotation, t);
                [centre[0] + r[0], centre[1] + r[1], centre[2] + r[2]]
            });
            // Closest approach to molecules on neighbouring sites (periodic).
            let mut closest = f64::INFINITY;
            for di in [m - 1, 0, 1] {
                for dj in [m - 1, 0, 1] {
                    for dl in [m - 1, 0, 1] {
                        let other = ((i + di) % m) * m * m + ((j + dj) % m) * m + (l + dl) % m;
                        let Some(o) = grid[other] else { continue };
                        for a in &atoms {
                            for b in &positions[3 * o..3 * o + 3] {
                                let d = [0, 1, 2].map(|x| minimum_image(a[x] - b[x]));
                                closest =
                                    closest.min((d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt());
                            }
                        }
                    }
                }
            }
            if best.as_ref().map_or(true, |(c, _)| closest > *c) {
                best = Some((closest, atoms));
            }
            if closest >= MIN_INTERMOLECULAR {
                break;
            }
        }
        let (_, atoms) = best.expect("at least one attempt");
        positions.extend_from_slice(&atoms);
        grid[site] = Some(k);
    }
    let numbers = (0..n_molecules).flat_map(|_| [8, 1, 1]).collect();
    Structure {
        numbers,
        positions,
        cell: Some([[length, 0.0, 0.0], [0.0, length, 0.0], [0.0, 0.0, length]]),
        pbc: [true; 3],
    }
}

fn random_rotation(rng: &mut SplitMix64) -> [[f64; 3]; 3] {
    // Uniform unit quaternion (Shoemake).
    let (u1, u2, u3) = (rng.uniform(), rng.uniform(), rng.uniform());
    let tau = std::f64::consts::TAU;
    let (a, b) = ((1.0 - u1).sqrt(), u1.sqrt());
    let (w, x, y, z) = (
        a * (tau * u2).sin(),
        a * (tau * u2).cos(),
        b * (tau * u3).sin(),
        b * (tau * u3).cos(),
    );
    [
        [
            1.0 - 2.0 * (y * y + z * z),
            2.0 * (x * y - z * w),
            2.0 * (x * z + y * w),
        ],
        [
            2.0 * (x * y + z * w),
            1.0 - 2.0 * (x * x + z * z),
            2.0 * (y * z - x * w),
        ],
        [
            2.0 * (x * z - y * w),
            2.0 * (y * z + x * w),
            1.0 - 2.0 * (x * x + y * y),
        ],
    ]
}

fn rotate(m: &[[f64; 3]; 3], v: [f64; 3]) -> [f64; 3] {
    [0, 1, 2].map(|a| m[a][0] * v[0] + m[a][1] * v[1] + m[a][2] * v[2])
}

/// An organic-like cluster of `n_atoms` C/H/N/O atoms, open boundaries, no two
/// atoms closer than 1.0 Å, about 0.1 atoms/Å³.
pub fn random_molecule(n_atoms: usize, seed: u64) -> Structure {
    let mut rng = SplitMix64(seed);
    let radius = (n_atoms as f64 * 10.0 * 3.0 / (4.0 * std::f64::consts::PI))
        .cbrt()
        .max(1.0);
    let mut positions: Vec<[f64; 3]> = Vec::with_capacity(n_atoms);
    while positions.len() < n_atoms {
        let p = [
            rng.range(-radius, radius),
            rng.range(-radius, radius),
            rng.range(-radius, radius),
        ];
        if p[0] * p[0] + p[1] * p[1] + p[2] * p[2] > radius * radius {
            continue;
        }
        if positions
            .iter()
            .all(|q| (0..3).map(|k| (p[k] - q[k]).powi(2)).sum::<f64>() >= 1.0)
        {
            positions.push(p);
        }
    }
    let numbers = (0..n_atoms)
        .map(|_| [1, 1, 6, 6, 7, 8][(rng.next_u64() % 6) as usize])
        .collect();
    Structure {
        numbers,
        positions,
        cell: None,
        pbc: [false; 3],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn water_has_the_right_density_and_geometry() {
        let w = water_box(1000, 1.0, 0);
        assert_eq!(w.numbers.len(), 3000);
        let cell = w.cell.unwrap();
        let volume = cell[0][0] * cell[1][1] * cell[2][2];
        let density = 1000.0 * 18.015 / 6.022_140_76e23 / (volume * 1e-24);
        assert!((density - 1.0).abs() < 1e-9);
        for m in 0..1000 {
            let o = w.positions[3 * m];
            for h in 1..3 {
                let d = (0..3)
                    .map(|k| (w.positions[3 * m + h][k] - o[k]).powi(2))
                    .sum::<f64>()
                    .sqrt();
                assert!((d - 0.9572).abs() < 1e-9);
            }
        }
        // No two atoms of different molecules closer than 1 Å (periodic images included).
        let pairs = crate::neighbors::brute_force_pairs(&w.positions[..300], None, [false; 3], 1.0);
        assert!(pairs.iter().all(|&(i, j, _)| i / 3 == j / 3));
        assert_eq!(water_box(10, 1.0, 7), water_box(10, 1.0, 7));
    }

    #[test]
    fn molecule_keeps_atoms_apart() {
        let m = random_molecule(50, 1);
        assert_eq!(m.numbers.len(), 50);
        assert!(
            crate::neighbors::brute_force_pairs(&m.positions, None, [false; 3], 0.999).is_empty()
        );
    }
}
