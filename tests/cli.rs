//! The `mlff` command-line tool, run as a user would: random models, `info`,
//! `eval` (checked bit for bit against `Model::compute` in f64), its error
//! messages and all-or-nothing output, `md`, `bench` and `convert`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use mlff::io::extxyz;
use mlff::{Device, Model, Options, Precision, Request, System};

const MLFF: &str = env!("CARGO_BIN_EXE_mlff");

/// A fresh empty directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("mlff-cli-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn mlff(args: &[&str]) -> Output {
    Command::new(MLFF)
        .args(args)
        .env_remove("MLFF_NUM_THREADS")
        .output()
        .expect("run mlff")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(args: &[&str]) -> (String, String) {
    let out = mlff(args);
    assert!(
        out.status.success(),
        "mlff {args:?} failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    (text(&out.stdout), text(&out.stderr))
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A random model with max_z 20 (and optional species), written by `mlff random-model`.
fn random_model(dir: &TempDir, name: &str, extra: &[&str]) -> PathBuf {
    let path = dir.path(name);
    let mut args = vec!["random-model", p(&path)];
    if !extra.contains(&"--seed") {
        args.extend_from_slice(&["--seed", "7"]);
    }
    args.extend_from_slice(extra);
    ok(&args);
    path
}

/// Three frames: a triclinic periodic water box, an open molecule, a slab; with an
/// extra per-atom column and info entries that must survive.
fn sample_input() -> String {
    let mut s = String::new();
    s.push_str("6\n");
    s.push_str("Lattice=\"6.1 0.0 0.0 0.4 5.9 0.0 -0.3 0.2 6.3\" Properties=species:S:1:pos:R:3:tags:I:1 config_type=bulk label=\"two waters\" pbc=\"T T T\"\n");
    s.push_str("O 0.10 0.20 0.30 0\nH 1.05 0.25 0.31 0\nH -0.14 1.12 0.28 0\n");
    s.push_str("O 3.20 3.10 3.40 1\nH 4.10 3.30 3.50 1\nh 3.00 4.05 3.20 1\n");
    s.push_str("4\n");
    s.push_str("Properties=Z:I:1:pos:R:3 energy=99.0 note=open\n");
    s.push_str("6 0.0 0.0 0.0\n8 1.21 0.0 0.0\n1 -0.55 0.94 0.0\n1 -0.55 -0.94 0.05\n");
    s.push_str("3\n");
    s.push_str("Lattice=\"4.5 0.0 0.0 0.0 4.8 0.0 0.0 0.0 20.0\" Properties=species:S:1:pos:R:3 pbc=\"T T F\"\n");
    s.push_str("N 0.0 0.0 1.0\nN 1.1 0.1 1.0\nO 2.2 2.4 2.9\n");
    s
}

fn f64_cpu() -> Options {
    Options {
        device: Device::Cpu,
        device_index: 0,
        precision: Precision::F64,
        num_threads: 0,
    }
}

#[test]
fn random_model_and_info() {
    let dir = TempDir::new("info");
    let model = random_model(
        &dir,
        "m.safetensors",
        &[
            "--hidden",
            "12",
            "--rbf",
            "6",
            "--blocks",
            "2",
            "--max-z",
            "20",
            "--species",
            "O,H,C",
            "--cutoff",
            "3.5",
        ],
    );
    let (stdout, _) = ok(&["info", p(&model)]);
    for needle in [
        "mlff-distiller-student",
        "not-rotation-invariant",
        "energy-discontinuous-at-cutoff",
        "random weights for testing, seed 7",
        "species:          H,C,O",
        "cutoff:           3.5",
        "receptive field:  7 ",
        "energy eV",
    ] {
        assert!(
            stdout.contains(needle),
            "`{needle}` missing from info:\n{stdout}"
        );
    }
    // The parameter count is the sum of the tensor sizes.
    let file = mlff::model::load_model_file(&model).unwrap();
    let count: usize = mlff::model::expected_shapes(&file.weights.student().unwrap().config)
        .values()
        .map(|s| s.iter().product::<usize>())
        .sum();
    assert!(
        stdout.contains(&format!("parameters:       {count}\n")),
        "{stdout}"
    );
    assert_eq!(file.metadata.species, Some(vec![1, 6, 8]));
    assert_eq!(file.weights.hidden(), 12);
    // Same seed, same weights (the file bytes may differ: metadata order is not fixed).
    let again = random_model(
        &dir,
        "again.safetensors",
        &[
            "--hidden",
            "12",
            "--rbf",
            "6",
            "--blocks",
            "2",
            "--max-z",
            "20",
            "--species",
            "O,H,C",
            "--cutoff",
            "3.5",
        ],
    );
    assert!(mlff::model::load_model_file(&again).unwrap().weights == file.weights);
    let other = random_model(
        &dir,
        "other.safetensors",
        &[
            "--hidden", "12", "--rbf", "6", "--blocks", "2", "--max-z", "20", "--seed", "8",
            "--cutoff", "3.5",
        ],
    );
    assert!(mlff::model::load_model_file(&other).unwrap().weights != file.weights);
}

#[test]
fn random_model_rejects_bad_arguments() {
    let dir = TempDir::new("badrandom");
    for args in [
        vec!["--hidden", "6"],
        vec!["--species", "H,Xx"],
        vec!["--max-z", "5", "--species", "O"],
        vec!["--cutoff", "-1"],
    ] {
        let out_path = dir.path("bad.safetensors");
        let mut all = vec!["random-model", p(&out_path)];
        all.extend_from_slice(&args);
        let out = mlff(&all);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(!out_path.exists());
    }
}

#[test]
fn info_reports_missing_and_garbage_files() {
    let dir = TempDir::new("infobad");
    let out = mlff(&["info", p(&dir.path("missing.safetensors"))]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("I/O error"),
        "{}",
        text(&out.stderr)
    );
    std::fs::write(dir.path("garbage"), b"not a model at all").unwrap();
    let out = mlff(&["info", p(&dir.path("garbage"))]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("invalid model file"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn eval_matches_model_compute_bit_for_bit_in_f64() {
    let dir = TempDir::new("eval");
    let model_path = random_model(&dir, "m.safetensors", &[]);
    let input = dir.path("in.extxyz");
    std::fs::write(&input, sample_input()).unwrap();
    let output = dir.path("out.extxyz");
    let (_, stderr) = ok(&[
        "eval",
        p(&model_path),
        p(&input),
        p(&output),
        "--precision",
        "f64",
        "--device",
        "cpu",
    ]);
    // Model warnings are printed once.
    assert_eq!(
        stderr.matches("not-rotation-invariant").count(),
        1,
        "{stderr}"
    );

    let inputs = extxyz::read_file(&input).unwrap();
    let outputs = extxyz::read_file(&output).unwrap();
    assert_eq!(outputs.len(), 3);
    let mut model = Model::load(&model_path, &f64_cpu()).unwrap();
    for (frame, out) in inputs.iter().zip(&outputs) {
        assert_eq!(
            (&frame.numbers, &frame.positions, frame.cell, frame.pbc),
            (&out.numbers, &out.positions, out.cell, out.pbc)
        );
        let system = System {
            numbers: &frame.numbers,
            positions: &frame.positions,
            cell: frame.cell,
            pbc: frame.pbc,
            n_local: frame.n_atoms(),
        };
        let expected = model.compute(&system, &Request::FORCES_VIRIAL).unwrap();
        let energy: f64 = out.info_value("energy").unwrap().unwrap().parse().unwrap();
        assert_eq!(
            energy.to_bits(),
            expected.energy.to_bits(),
            "frame {}",
            frame.index
        );
        let forces = out.column("forces").unwrap().as_reals().unwrap();
        let expected_forces: Vec<f64> = expected.forces.iter().flatten().copied().collect();
        assert_eq!(forces.len(), expected_forces.len());
        for (a, b) in forces.iter().zip(&expected_forces) {
            assert_eq!(a.to_bits(), b.to_bits(), "frame {}", frame.index);
        }
        let virial =
            extxyz::parse_matrix_column_major(out.info_value("virial").unwrap().unwrap()).unwrap();
        assert_eq!(virial, expected.virial, "frame {}", frame.index);
        match out.periodic_volume() {
            Some(volume) => {
                let stress =
                    extxyz::parse_matrix_column_major(out.info_value("stress").unwrap().unwrap())
                        .unwrap();
                let expected_stress = expected.virial.map(|row| row.map(|w| -w / volume));
                assert_eq!(stress, expected_stress, "frame {}", frame.index);
            }
            None => assert_eq!(out.info_value("stress"), None, "frame {}", frame.index),
        }
    }
    // The student's virial is not symmetric; a transposed write would have shown above.
    let v = extxyz::parse_matrix_column_major(outputs[0].info_value("virial").unwrap().unwrap())
        .unwrap();
    assert_ne!(v[0][1], v[1][0]);
    // Everything else survives.
    assert_eq!(outputs[0].info_value("config_type"), Some(Some("bulk")));
    assert_eq!(outputs[0].info_value("label"), Some(Some("two waters")));
    assert_eq!(
        outputs[0].column("tags").unwrap().values,
        vec!["0", "0", "0", "1", "1", "1"]
    );
    assert_eq!(outputs[1].info_value("note"), Some(Some("open")));
    assert!(outputs[1].has_z_column);
    assert_ne!(outputs[1].info_value("energy"), Some(Some("99.0")));
    assert_eq!(
        dir.entries(),
        vec!["in.extxyz", "m.safetensors", "out.extxyz"]
    );
}

#[test]
fn eval_f32_is_close_to_f64() {
    let dir = TempDir::new("evalf32");
    let model_path = random_model(&dir, "m.safetensors", &[]);
    let input = dir.path("in.extxyz");
    std::fs::write(&input, sample_input()).unwrap();
    ok(&[
        "eval",
        p(&model_path),
        p(&input),
        p(&dir.path("f64.extxyz")),
        "--precision",
        "f64",
        "--device",
        "cpu",
    ]);
    ok(&[
        "eval",
        p(&model_path),
        p(&input),
        p(&dir.path("f32.extxyz")),
        "--device",
        "cpu",
        "--threads",
        "1",
    ]);
    let a = extxyz::read_file(dir.path("f64.extxyz")).unwrap();
    let b = extxyz::read_file(dir.path("f32.extxyz")).unwrap();
    for (x, y) in a.iter().zip(&b) {
        let ex: f64 = x.info_value("energy").unwrap().unwrap().parse().unwrap();
        let ey: f64 = y.info_value("energy").unwrap().unwrap().parse().unwrap();
        assert!((ex - ey).abs() <= 1e-4 * ex.abs().max(1.0), "{ex} vs {ey}");
        let fx = x.column("forces").unwrap().as_reals().unwrap();
        let fy = y.column("forces").unwrap().as_reals().unwrap();
        let norm: f64 = fx.iter().map(|v| v * v).sum::<f64>().sqrt();
        let diff: f64 = fx
            .iter()
            .zip(&fy)
            .map(|(u, v)| (u - v) * (u - v))
            .sum::<f64>()
            .sqrt();
        assert!(diff <= 1e-4 * norm.max(1e-3), "{diff} vs {norm}");
    }
}

/// Runs `eval` on a bad input; checks the exit status, that the message names the
/// frame and the line, and that the output was not created (or, when it existed,
/// was left untouched) and no temporary file is left behind.
fn assert_eval_fails(model: &Path, input_text: &str, frame: usize, line: usize, needle: &str) {
    let dir = TempDir::new("evalbad");
    let input = dir.path("in.extxyz");
    std::fs::write(&input, input_text).unwrap();
    let output = dir.path("out.extxyz");
    let out = mlff(&[
        "eval",
        p(model),
        p(&input),
        p(&output),
        "--precision",
        "f64",
        "--device",
        "cpu",
    ]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "should fail:\n{input_text}");
    assert!(
        stderr.contains(&format!("frame index {frame}, line {line}:")),
        "expected frame {frame} line {line}:\n{stderr}"
    );
    assert!(stderr.contains(needle), "expected `{needle}`:\n{stderr}");
    assert!(!output.exists(), "a partial output was written");
    // An existing output stays as it was.
    std::fs::write(&output, "previous results\n").unwrap();
    let out = mlff(&[
        "eval",
        p(model),
        p(&input),
        p(&output),
        "--precision",
        "f64",
        "--device",
        "cpu",
    ]);
    assert!(!out.status.success());
    assert_eq!(
        std::fs::read_to_string(&output).unwrap(),
        "previous results\n"
    );
    assert_eq!(dir.entries(), vec!["in.extxyz", "out.extxyz"]);
}

/// Frame 0 is lines 1-5; frame 1: count on line 6, comment on 7, atoms on 8, 9, 10.
fn two_frames(comment: &str, atoms: [&str; 3]) -> String {
    format!("3\nProperties=species:S:1:pos:R:3\nO 0 0 0\nH 0.96 0 0\nH -0.24 0.93 0\n3\n{comment}\n{}\n{}\n{}\n", atoms[0], atoms[1], atoms[2])
}

#[test]
fn eval_errors_name_frame_and_line_and_write_nothing() {
    let dir = TempDir::new("evalerr");
    let model = random_model(&dir, "m.safetensors", &["--max-z", "20"]);
    let species_model = random_model(&dir, "ho.safetensors", &["--species", "H,O"]);
    let props = "Properties=species:S:1:pos:R:3";
    let good = ["O 0 0 0", "H 0.96 0 0", "H -0.24 0.93 0"];
    assert_eval_fails(
        &model,
        &two_frames(props, ["O 0 0 0", "Qz 0.96 0 0", good[2]]),
        1,
        9,
        "unknown element",
    );
    assert_eval_fails(
        &model,
        &two_frames(props, ["O 0 0 0", "H NaN 0 0", good[2]]),
        1,
        9,
        "not a finite number",
    );
    assert_eval_fails(
        &model,
        &two_frames(props, ["O 0 0 0", "H 0.96 0", good[2]]),
        1,
        9,
        "expected 4 fields",
    );
    assert_eval_fails(
        &model,
        &two_frames("Lattice=\"5 0 0 0 5 0 0 0\"", good),
        1,
        7,
        "Lattice needs 9 numbers",
    );
    assert_eval_fails(
        &model,
        &two_frames("Lattice=\"5 0 0 0 5 0 0 0 five\"", good),
        1,
        7,
        "Lattice",
    );
    // Truncated: frame 1 announces 3 atoms and the file ends after 2.
    let truncated = "3\nProperties=species:S:1:pos:R:3\nO 0 0 0\nH 0.96 0 0\nH -0.24 0.93 0\n3\nProperties=species:S:1:pos:R:3\nO 0 0 0\nH 0.96 0 0\n";
    assert_eval_fails(&model, truncated, 1, 6, "truncated");
    // Elements the model cannot take: the library's message plus frame and line.
    assert_eval_fails(
        &model,
        &two_frames(
            "Properties=Z:I:1:pos:R:3",
            ["8 0 0 0", "50 0.96 0 0", "1 -0.24 0.93 0"],
        ),
        1,
        9,
        "atomic number 50",
    );
    assert_eval_fails(
        &model,
        &two_frames(
            "Properties=Z:I:1:pos:R:3",
            ["8 0 0 0", "0 0.96 0 0", "1 -0.24 0.93 0"],
        ),
        1,
        9,
        "invalid argument",
    );
    assert_eval_fails(
        &species_model,
        &two_frames(props, ["O 0 0 0", "H 0.96 0 0", "C -0.24 0.93 0"]),
        1,
        10,
        "supported: H,O",
    );
    // A cell that is singular along a periodic axis: the comment line.
    assert_eval_fails(
        &model,
        &two_frames("Lattice=\"5 0 0 5 0 0 0 0 5\" pbc=\"T T T\"", good),
        1,
        7,
        "invalid argument",
    );
}

#[test]
fn eval_reports_missing_files() {
    let dir = TempDir::new("evalmissing");
    let model = random_model(&dir, "m.safetensors", &[]);
    let out = mlff(&[
        "eval",
        p(&model),
        p(&dir.path("nope.extxyz")),
        p(&dir.path("out.extxyz")),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("nope.extxyz"),
        "{}",
        text(&out.stderr)
    );
    std::fs::write(dir.path("in.extxyz"), sample_input()).unwrap();
    let out = mlff(&[
        "eval",
        p(&dir.path("nope.safetensors")),
        p(&dir.path("in.extxyz")),
        p(&dir.path("out.extxyz")),
    ]);
    assert!(!out.status.success());
    assert!(!dir.path("out.extxyz").exists());
}

/// Total energy along an NVE trajectory of one molecule whose pairs never cross the
/// cutoff: velocity Verlet must conserve it to O(dt²).
#[test]
fn md_nve_conserves_energy_and_writes_a_trajectory() {
    let dir = TempDir::new("md");
    let model = random_model(&dir, "m.safetensors", &["--cutoff", "4.0"]);
    let input = dir.path("in.extxyz");
    std::fs::write(
        &input,
        "3\nProperties=species:S:1:pos:R:3\nO 0 0 0\nH 0.96 0 0\nH -0.24 0.93 0.05\n",
    )
    .unwrap();
    let traj = dir.path("traj.extxyz");
    let (stdout, _) = ok(&[
        "md",
        p(&model),
        p(&input),
        "--steps",
        "200",
        "--dt-fs",
        "0.1",
        "--temperature",
        "100",
        "--seed",
        "3",
        "--traj",
        p(&traj),
        "--every",
        "20",
        "--precision",
        "f64",
        "--device",
        "cpu",
    ]);
    for needle in ["energy drift:", "eV/atom/ps", "atom-steps/s", "ns/day"] {
        assert!(stdout.contains(needle), "`{needle}` missing:\n{stdout}");
    }
    let frames = extxyz::read_file(&traj).unwrap();
    assert_eq!(frames.len(), 11);
    let total = |f: &extxyz::Frame| -> f64 {
        let e: f64 = f.info_value("energy").unwrap().unwrap().parse().unwrap();
        let k: f64 = f
            .info_value("kinetic_energy")
            .unwrap()
            .unwrap()
            .parse()
            .unwrap();
        e + k
    };
    let e0 = total(&frames[0]);
    let kinetic0: f64 = frames[0]
        .info_value("kinetic_energy")
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    assert!(kinetic0 > 0.0);
    for f in &frames {
        assert!(
            (total(f) - e0).abs() < 1e-5,
            "step {:?}: {} vs {e0}",
            f.info_value("step"),
            total(f)
        );
    }
    let last_step: u64 = frames[10]
        .info_value("step")
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(last_step, 200);
    // The first frame's energy is the model's energy of the input.
    let mut m = Model::load(&model, &f64_cpu()).unwrap();
    let start = extxyz::read_file(&input).unwrap();
    let e = m
        .compute(&start[0].system(), &Request::ENERGY)
        .unwrap()
        .energy;
    let e_traj: f64 = frames[0]
        .info_value("energy")
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(e.to_bits(), e_traj.to_bits());
    // Zero net momentum from the Maxwell-Boltzmann start (momenta column, ASE units).
    let momenta = frames[0].column("momenta").unwrap().as_reals().unwrap();
    for a in 0..3 {
        let sum: f64 = (0..3).map(|i| momenta[3 * i + a]).sum();
        assert!(sum.abs() < 1e-12, "{sum}");
    }
}

#[test]
fn md_langevin_runs_and_is_deterministic() {
    let dir = TempDir::new("mdnvt");
    let model = random_model(&dir, "m.safetensors", &[]);
    let input = dir.path("in.extxyz");
    std::fs::write(
        &input,
        "3\nLattice=\"7 0 0 0 7 0 0 0 7\"\nO 0 0 0\nH 0.96 0 0\nH -0.24 0.93 0.05\n",
    )
    .unwrap();
    let run = |name: &str| {
        let traj = dir.path(name);
        ok(&[
            "md",
            p(&model),
            p(&input),
            "--steps",
            "30",
            "--thermostat",
            "langevin",
            "--temperature",
            "300",
            "--friction",
            "5",
            "--traj",
            p(&traj),
            "--every",
            "10",
            "--device",
            "cpu",
            "--precision",
            "f64",
        ]);
        std::fs::read_to_string(traj).unwrap()
    };
    let (a, b) = (run("a.extxyz"), run("b.extxyz"));
    assert_eq!(a, b);
    assert_eq!(extxyz::read_str(&a).unwrap().len(), 4);
    // Langevin without a temperature is an error.
    let out = mlff(&["md", p(&model), p(&input), "--thermostat", "langevin"]);
    assert!(!out.status.success());
}

#[test]
fn bench_writes_table_json_and_png() {
    let dir = TempDir::new("bench");
    let model = random_model(&dir, "m.safetensors", &[]);
    let (json, png, xyz) = (dir.path("b.json"), dir.path("b.png"), dir.path("b.extxyz"));
    let (stdout, _) = ok(&[
        "bench",
        p(&model),
        "--sizes",
        "6,30",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--device",
        "cpu",
        "--json",
        p(&json),
        "--png",
        p(&png),
        "--xyz",
        p(&xyz),
    ]);
    assert!(
        stdout.contains("atom-steps/s") && stdout.contains("ns/day"),
        "{stdout}"
    );
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let atoms: Vec<u64> = value["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["atoms"].as_u64().unwrap())
        .collect();
    assert_eq!(atoms, vec![6, 30]);
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&bytes[12..16], b"IHDR");
    let (w, h) = (
        u32::from_be_bytes(bytes[16..20].try_into().unwrap()),
        u32::from_be_bytes(bytes[20..24].try_into().unwrap()),
    );
    assert_eq!((w, h), (800, 560));
    // The benchmark boxes are water at about 1 g/cm3.
    let boxes = extxyz::read_file(&xyz).unwrap();
    assert_eq!(boxes.len(), 2);
    for b in &boxes {
        let mass = b
            .numbers
            .iter()
            .map(|&z| if z == 8 { 15.999 } else { 1.008 })
            .sum::<f64>()
            * 1.660_539e-24;
        let density = mass / (b.periodic_volume().unwrap() * 1e-24);
        assert!((density - 1.0).abs() < 0.01, "{density}");
    }
}

#[test]
fn convert_shared_models_when_present() {
    let shared =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/models/student_ultra_tiny_21k.onnx");
    if !shared.exists() {
        eprintln!(
            "SKIP convert_shared_models_when_present: {} not found",
            shared.display()
        );
        return;
    }
    let dir = TempDir::new("convert");
    let output = dir.path("tiny.safetensors");
    let out = mlff(&["convert", p(&shared), p(&output), "--species", "H,C,N,O"]);
    if !out.status.success() && text(&out.stderr).to_lowercase().contains("python") {
        eprintln!(
            "SKIP convert_shared_models_when_present: {}",
            text(&out.stderr)
        );
        return;
    }
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (stdout, _) = ok(&["info", p(&output)]);
    assert!(stdout.contains("species:          H,C,N,O"), "{stdout}");
    assert!(stdout.contains("hidden width H:   32"), "{stdout}");
}

/// Reads eval's output with ASE itself when a Python with ASE is around (not in CI).
#[test]
fn ase_reads_eval_output_when_available() {
    let python = std::env::var("MLFF_ASE_PYTHON").unwrap_or_else(|_| "python3".into());
    let has_ase = Command::new(&python)
        .args(["-c", "import ase.io"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !has_ase {
        eprintln!("SKIP ase_reads_eval_output_when_available: `{python} -c 'import ase.io'` failed (set MLFF_ASE_PYTHON to a Python with ASE)");
        return;
    }
    let dir = TempDir::new("ase");
    let model = random_model(&dir, "m.safetensors", &[]);
    let input = dir.path("in.extxyz");
    std::fs::write(&input, sample_input()).unwrap();
    let output = dir.path("out.extxyz");
    ok(&[
        "eval",
        p(&model),
        p(&input),
        p(&output),
        "--precision",
        "f64",
        "--device",
        "cpu",
    ]);
    let script = r#"
import sys, json, ase.io
# Numbers as repr strings: exact, whatever the JSON reader's float parsing does.
exact = lambda x: [exact(y) for y in x] if hasattr(x, "__len__") else repr(float(x))
out = []
for a in ase.io.read(sys.argv[1], index=':'):
    out.append({"cell": exact(a.cell.array.tolist()), "energy": exact(a.get_potential_energy()),
                "forces": exact(a.get_forces().tolist()), "virial": exact(a.info["virial"].tolist()),
                "stress": exact(a.get_stress(voigt=False).tolist()) if all(a.pbc) else None})
print(json.dumps(out))
"#;
    let num =
        |v: &serde_json::Value| -> f64 { v.as_str().expect("a number as text").parse().unwrap() };
    let run = Command::new(&python)
        .args(["-c", script, p(&output)])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run.stderr));
    let frames: serde_json::Value = serde_json::from_str(&text(&run.stdout)).unwrap();
    let inputs = extxyz::read_file(&input).unwrap();
    let mut m = Model::load(&model, &f64_cpu()).unwrap();
    for (k, frame) in inputs.iter().enumerate() {
        let r = m.compute(&frame.system(), &Request::FORCES_VIRIAL).unwrap();
        let ase = &frames[k];
        assert_eq!(num(&ase["energy"]), r.energy);
        for a in 0..3 {
            for b in 0..3 {
                // ase.io.read must return W[a][b] (not its transpose) and the cell rows.
                assert_eq!(
                    num(&ase["virial"][a][b]),
                    r.virial[a][b],
                    "frame {k} W[{a}][{b}]"
                );
                let cell = frame.cell.map(|c| c[a][b]).unwrap_or(0.0);
                assert_eq!(num(&ase["cell"][a][b]), cell);
            }
        }
        for (i, f) in r.forces.iter().enumerate() {
            for a in 0..3 {
                assert_eq!(num(&ase["forces"][i][a]), f[a]);
            }
        }
        if let Some(volume) = frame.periodic_volume() {
            // ASE keeps the symmetric part of the stress (Voigt); compare the diagonal.
            for a in 0..3 {
                assert_eq!(num(&ase["stress"][a][a]), -r.virial[a][a] / volume);
            }
        }
    }
}
