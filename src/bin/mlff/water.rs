//! Deterministic water boxes for benchmarks: molecules on a cubic grid at
//! 1 g/cm³ (29.9 Å³ per molecule), each randomly oriented, rejecting orientations
//! that bring atoms of different molecules closer than 1.6 Å.

use mlff::model::random::SplitMix64;

/// Volume per molecule at 1 g/cm³: 18.015 amu / (1 g/cm³) in Å³.
const VOLUME_PER_MOLECULE: f64 = 18.015 * 1.660_539_066_60;
const OH: f64 = 0.9572;
const HOH_DEGREES: f64 = 104.52;
const MIN_INTERMOLECULAR: f64 = 1.6;

/// A water box of `n_molecules` molecules (3 atoms each), periodic along all axes.
pub struct WaterBox {
    pub numbers: Vec<i32>,
    pub positions: Vec<[f64; 3]>,
    pub cell: [[f64; 3]; 3],
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

/// Builds the box deterministically from `seed`.
pub fn water_box(n_molecules: usize, seed: u64) -> WaterBox {
    let n_molecules = n_molecules.max(1);
    let length = (n_molecules as f64 * VOLUME_PER_MOLECULE).cbrt();
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
    WaterBox {
        numbers,
        positions,
        cell: [[length, 0.0, 0.0], [0.0, length, 0.0], [0.0, 0.0, length]],
    }
}
