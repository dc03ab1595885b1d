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

/// Liquid water at `density` g/cm³: `n_molecules` molecules on a jittered cubic
/// grid with random orientations in a periodic cubic box (O-H 0.9572 Å, HOH 104.52°).
pub fn water_box(n_molecules: usize, density: f64, seed: u64) -> Structure {
    const MOLAR_MASS: f64 = 18.015; // g/mol
    const AVOGADRO: f64 = 6.022_140_76e23;
    let volume = n_molecules as f64 * MOLAR_MASS / AVOGADRO / density * 1e24; // Å³
    let length = volume.cbrt();
    let per_side = (n_molecules as f64).cbrt().ceil().max(1.0) as usize;
    let spacing = length / per_side as f64;
    let mut rng = SplitMix64(seed);
    let (bond, half_angle) = (0.9572, 104.52f64.to_radians() / 2.0);
    let mut numbers = Vec::with_capacity(3 * n_molecules);
    let mut positions = Vec::with_capacity(3 * n_molecules);
    'grid: for a in 0..per_side {
        for b in 0..per_side {
            for c in 0..per_side {
                if numbers.len() == 3 * n_molecules {
                    break 'grid;
                }
                let jitter = 0.1 * spacing;
                let o = [
                    (a as f64 + 0.5) * spacing + rng.range(-jitter, jitter),
                    (b as f64 + 0.5) * spacing + rng.range(-jitter, jitter),
                    (c as f64 + 0.5) * spacing + rng.range(-jitter, jitter),
                ];
                // A random orthonormal frame (x: bisector, y: in-plane normal).
                let x = random_unit(&mut rng);
                let t = random_unit(&mut rng);
                let mut y = cross(&x, &t);
                let ny = (y[0] * y[0] + y[1] * y[1] + y[2] * y[2]).sqrt();
                y = [y[0] / ny, y[1] / ny, y[2] / ny];
                numbers.extend_from_slice(&[8, 1, 1]);
                positions.push(o);
                for sign in [1.0, -1.0] {
                    let (cx, cy) = (bond * half_angle.cos(), sign * bond * half_angle.sin());
                    positions.push([
                        o[0] + cx * x[0] + cy * y[0],
                        o[1] + cx * x[1] + cy * y[1],
                        o[2] + cx * x[2] + cy * y[2],
                    ]);
                }
            }
        }
    }
    Structure {
        numbers,
        positions,
        cell: Some([[length, 0.0, 0.0], [0.0, length, 0.0], [0.0, 0.0, length]]),
        pbc: [true; 3],
    }
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

fn random_unit(rng: &mut SplitMix64) -> [f64; 3] {
    loop {
        let v = [
            rng.range(-1.0, 1.0),
            rng.range(-1.0, 1.0),
            rng.range(-1.0, 1.0),
        ];
        let n2 = v[0] * v[0] + v[1] * v[1] + v[2] * v[2];
        if n2 > 1e-4 && n2 <= 1.0 {
            let n = n2.sqrt();
            return [v[0] / n, v[1] / n, v[2] / n];
        }
    }
}

fn cross(a: &[f64; 3], b: &[f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
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
