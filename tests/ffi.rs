//! The C ABI from the outside: builds tests/c/test_mlff.c and tests/cpp/test_mlff.cpp
//! against the cdylib of this build (target/<profile>/libmlff.so), feeds them a
//! random model with the values the Rust API computes, and checks that they pass.
//! Also: the CMake package as a consumer uses it, the public fixtures through the
//! C API (when ../shared exists), valgrind (when MLFF_VALGRIND=1), and direct calls
//! of the extern functions from Rust.
//!
//! Tests that need a tool that is missing (cc, c++, cmake, valgrind) print SKIP and
//! why; with MLFF_REQUIRE_ALL=1 (scripts/test-c-abi.sh sets it) they fail instead.

use std::ffi::{CStr, CString};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use mlff::ffi::*;
use mlff::model::random::{random_student, SplitMix64};
use mlff::model::{save_model_bytes, StudentConfig};
use mlff::{Device, Model, Options, Precision, Request, System};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// target/<profile> of this test build, with an up-to-date libmlff.so in it.
///
/// Cargo builds only the rlib for integration tests, so the cdylib there may be
/// stale or missing. When it is older than any source, build it (once per test
/// process, same profile and target directory). The check is by modification
/// time because a nested `cargo build --lib` makes the next `cargo test` rebuild
/// the rlib, so building unconditionally would cost a compile on every run.
fn library_dir() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("test executable path");
            let dir = exe
                .parent()
                .and_then(Path::parent)
                .expect("target/<profile>/deps/<test>")
                .to_path_buf();
            let library = dir.join("libmlff.so");
            let built = std::fs::metadata(&library).and_then(|m| m.modified()).ok();
            let sources = ["src", "tools", "Cargo.toml", "Cargo.lock", "build.rs"]
                .map(|p| newest_modification(&root().join(p)));
            let newest_source = sources.into_iter().flatten().max();
            if built.is_none() || newest_source > built {
                let release = dir.file_name().is_some_and(|n| n == "release");
                let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
                let mut build = Command::new(cargo);
                build
                    .current_dir(root())
                    .args(["build", "--lib", "--target-dir"])
                    .arg(dir.parent().expect("target dir"));
                if release {
                    build.arg("--release");
                }
                run_ok(&mut build);
            }
            assert!(library.exists(), "no {}", library.display());
            dir
        })
        .clone()
}

/// Latest modification time of a file or of any file below a folder.
fn newest_modification(path: &Path) -> Option<std::time::SystemTime> {
    let metadata = std::fs::metadata(path).ok()?;
    if !metadata.is_dir() {
        return metadata.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .flatten()
        .filter_map(|entry| newest_modification(&entry.path()))
        .max()
}

fn require_all() -> bool {
    std::env::var_os("MLFF_REQUIRE_ALL").is_some_and(|v| v == "1")
}

/// Prints why a test does not run; fails instead under MLFF_REQUIRE_ALL=1.
fn skip(why: &str) {
    assert!(!require_all(), "MLFF_REQUIRE_ALL=1 but: {why}");
    eprintln!("SKIP: {why}");
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mlff-ffi-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    print!("{}", String::from_utf8_lossy(&output.stdout));
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    output
}

fn run_ok(command: &mut Command) {
    let description = format!("{command:?}");
    let output = run(command);
    assert!(
        output.status.success(),
        "{description} failed with {}",
        output.status
    );
}

// ---------------------------------------------------------------- test inputs

const SPECIES: &str = "H,C,N,O";

fn test_config() -> StudentConfig {
    StudentConfig {
        hidden: 16,
        num_rbf: 8,
        num_blocks: 2,
        cutoff: 4.0,
        max_z: 30,
    }
}

fn write_model(path: &Path) {
    let weights = random_student(&test_config(), 20251125);
    let bytes = save_model_bytes(
        &weights,
        false,
        &[
            ("provenance", "random weights, tests/ffi.rs"),
            ("species", SPECIES),
        ],
    )
    .expect("serialise the random model");
    std::fs::write(path, bytes).unwrap();
}

/// A structure owning its arrays.
struct Structure {
    name: &'static str,
    numbers: Vec<i32>,
    positions: Vec<[f64; 3]>,
    cell: Option<[[f64; 3]; 3]>,
    pbc: [bool; 3],
    n_local: usize,
}

impl Structure {
    fn system(&self) -> System<'_> {
        System {
            numbers: &self.numbers,
            positions: &self.positions,
            cell: self.cell,
            pbc: self.pbc,
            n_local: self.n_local,
        }
    }
}

/// `n` atoms in a box of side `side` (Å), at least 0.9 Å apart, elements from the species.
fn random_atoms(rng: &mut SplitMix64, n: usize, side: f64) -> (Vec<i32>, Vec<[f64; 3]>) {
    let elements = [1, 6, 7, 8];
    let mut positions: Vec<[f64; 3]> = Vec::new();
    while positions.len() < n {
        let p = [
            rng.range(0.0, side),
            rng.range(0.0, side),
            rng.range(0.0, side),
        ];
        if positions
            .iter()
            .all(|q| (0..3).map(|a| (p[a] - q[a]).powi(2)).sum::<f64>() > 0.81)
        {
            positions.push(p);
        }
    }
    let numbers = (0..n)
        .map(|_| elements[(rng.next_u64() % 4) as usize])
        .collect();
    (numbers, positions)
}

fn test_structures() -> Vec<Structure> {
    let mut rng = SplitMix64(7);
    let mut structures = Vec::new();
    let (numbers, positions) = random_atoms(&mut rng, 6, 3.0);
    structures.push(Structure {
        name: "molecule_6",
        n_local: 6,
        numbers,
        positions,
        cell: None,
        pbc: [false; 3],
    });
    // Triclinic, all periodic, some atoms outside the cell (unwrapped coordinates).
    let (numbers, mut positions) = random_atoms(&mut rng, 8, 4.5);
    positions[0][0] += 4.5;
    positions[3][2] -= 5.1;
    let cell = [[4.5, 0.0, 0.0], [0.7, 4.8, 0.0], [0.3, -0.4, 5.1]];
    structures.push(Structure {
        name: "periodic_8",
        n_local: 8,
        numbers,
        positions,
        cell: Some(cell),
        pbc: [true; 3],
    });
    let (numbers, positions) = random_atoms(&mut rng, 6, 4.0);
    let cell = [[4.0, 0.0, 0.0], [0.0, 4.2, 0.0], [0.0, 0.0, 10.0]];
    structures.push(Structure {
        name: "slab_6",
        n_local: 6,
        numbers,
        positions,
        cell: Some(cell),
        pbc: [true, true, false],
    });
    // A wire whose period is shorter than the cutoff: several images of each atom.
    let (numbers, mut positions) = random_atoms(&mut rng, 3, 2.4);
    for p in &mut positions {
        p[2] *= 0.9;
    }
    let cell = [[10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 2.5]];
    structures.push(Structure {
        name: "wire_3",
        n_local: 3,
        numbers,
        positions,
        cell: Some(cell),
        pbc: [false, false, true],
    });
    let (numbers, positions) = random_atoms(&mut rng, 7, 3.5);
    structures.push(Structure {
        name: "ghosts_7_local_4",
        n_local: 4,
        numbers,
        positions,
        cell: None,
        pbc: [false; 3],
    });
    structures.push(Structure {
        name: "single_atom",
        n_local: 1,
        numbers: vec![8],
        positions: vec![[0.5, 0.5, 0.5]],
        cell: None,
        pbc: [false; 3],
    });
    structures
}

fn list(out: &mut String, name: &str, values: impl IntoIterator<Item = f64>) {
    let values: Vec<f64> = values.into_iter().collect();
    write!(out, "{name} {}", values.len()).unwrap();
    for v in values {
        write!(out, " {v:?}").unwrap(); // shortest representation that reads back exactly
    }
    out.push('\n');
}

fn f64_cpu() -> Options {
    Options {
        device: Device::Cpu,
        precision: Precision::F64,
        ..Options::default()
    }
}

/// Writes the model files and cases.txt (values from the Rust API, compared bit for
/// bit) into `dir`. Returns the engine's error if it could not compute; cases.txt
/// then lists no cases, so that the error paths still run.
fn write_inputs(dir: &Path) -> Result<(), String> {
    let model_path = dir.join("model.safetensors");
    write_model(&model_path);
    let bytes = std::fs::read(&model_path).unwrap();
    std::fs::write(dir.join("truncated.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(
        dir.join("garbage.bin"),
        b"this is not a model file, just some text\n".repeat(20),
    )
    .unwrap();
    std::fs::write(dir.join("empty.bin"), b"").unwrap();

    let mut model = Model::load(&model_path, &f64_cpu()).expect("the random model loads");
    let mut out = String::from("mlff-cases-1\n");
    writeln!(
        out,
        "cutoff {:?}\nnum_layers {}",
        model.cutoff(),
        model.num_layers()
    )
    .unwrap();
    let supported = model.supported_numbers();
    writeln!(
        out,
        "supported {} {}",
        supported.len(),
        supported
            .iter()
            .map(|z| z.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    )
    .unwrap();
    let codes: Vec<&str> = model.warnings().iter().map(|w| w.code).collect();
    writeln!(out, "warnings {} {}", codes.len(), codes.join(" ")).unwrap();
    let mut cases = String::new();
    let mut n_cases = 0;
    let mut failure = Ok(());
    for s in test_structures() {
        let r = match model.compute(&s.system(), &Request::ALL) {
            Ok(r) => r,
            Err(e) => {
                failure = Err(format!("the Rust API cannot compute `{}`: {e}", s.name));
                break;
            }
        };
        n_cases += 1;
        let n = s.numbers.len();
        writeln!(cases, "case {} n_atoms {n} n_local {}", s.name, s.n_local).unwrap();
        writeln!(
            cases,
            "pbc {} {} {}",
            s.pbc[0] as u8, s.pbc[1] as u8, s.pbc[2] as u8
        )
        .unwrap();
        list(
            &mut cases,
            "cell",
            s.cell.iter().flatten().flatten().copied(),
        );
        writeln!(
            cases,
            "numbers {n} {}",
            s.numbers
                .iter()
                .map(|z| z.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        )
        .unwrap();
        list(
            &mut cases,
            "positions",
            s.positions.iter().flatten().copied(),
        );
        writeln!(cases, "energy {:?}", r.energy).unwrap();
        list(&mut cases, "forces", r.forces.iter().flatten().copied());
        list(&mut cases, "virial", r.virial.iter().flatten().copied());
        list(&mut cases, "atom_energies", r.atom_energies.iter().copied());
        list(
            &mut cases,
            "atom_virials",
            r.atom_virials.iter().flatten().flatten().copied(),
        );
        cases.push_str("tolerance 0 0\n");
    }
    writeln!(out, "cases {n_cases}").unwrap();
    out.push_str(&cases);
    std::fs::write(dir.join("cases.txt"), out).unwrap();
    failure
}

fn cuda_available() -> &'static str {
    if mlff::engine::cuda::is_available() {
        "1"
    } else {
        "0"
    }
}

// ------------------------------------------------------------------- builds

fn build_c(dir: &Path) -> Option<PathBuf> {
    if !have("cc") {
        skip("no C compiler `cc` on PATH; the C test program was not built");
        return None;
    }
    let lib = library_dir();
    let exe = dir.join("test_mlff");
    run_ok(
        Command::new("cc")
            .args([
                "-std=c99",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-pedantic",
                "-O1",
                "-g",
                "-pthread",
                "-I",
            ])
            .arg(root().join("include"))
            .arg(root().join("tests/c/test_mlff.c"))
            .arg("-L")
            .arg(&lib)
            .arg(format!("-Wl,-rpath,{}", lib.display()))
            .args(["-lmlff", "-lm", "-o"])
            .arg(&exe),
    );
    Some(exe)
}

fn build_cpp(dir: &Path) -> Option<PathBuf> {
    if !have("c++") {
        skip("no C++ compiler `c++` on PATH; the C++ test program was not built");
        return None;
    }
    let lib = library_dir();
    let exe = dir.join("test_mlff_cpp");
    run_ok(
        Command::new("c++")
            .args([
                "-std=c++17",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-pedantic",
                "-O1",
                "-g",
                "-I",
            ])
            .arg(root().join("include"))
            .arg(root().join("tests/cpp/test_mlff.cpp"))
            .arg("-L")
            .arg(&lib)
            .arg(format!("-Wl,-rpath,{}", lib.display()))
            .args(["-lmlff", "-o"])
            .arg(&exe),
    );
    Some(exe)
}

// -------------------------------------------------------------------- tests

#[test]
fn c_program_matches_the_rust_api_and_reports_every_error() {
    let dir = scratch("c");
    let inputs = write_inputs(&dir);
    if let Some(exe) = build_c(&dir) {
        run_ok(
            Command::new(&exe)
                .arg("check")
                .arg(&dir)
                .arg(cuda_available()),
        );
        // Repeated computes, errors, and create/destroy cycles that release their threads.
        run_ok(Command::new(&exe).arg("loop").arg(&dir).arg("3000"));
    }
    inputs.expect("expected values");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cpp_wrapper_matches_the_rust_api_and_throws_on_errors() {
    let dir = scratch("cpp");
    let inputs = write_inputs(&dir);
    if let Some(exe) = build_cpp(&dir) {
        run_ok(Command::new(&exe).arg(&dir).arg(cuda_available()));
    }
    inputs.expect("expected values");
    let _ = std::fs::remove_dir_all(&dir);
}

fn find_cmake() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("MLFF_CMAKE") {
        return Some(PathBuf::from(path));
    }
    if have("cmake") {
        return Some(PathBuf::from("cmake"));
    }
    let venv = std::env::var_os("MLFF_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv"));
    let candidate = venv.join("bin/cmake");
    candidate.exists().then_some(candidate)
}

#[test]
fn cmake_package_gives_consumers_a_working_target() {
    let Some(cmake) = find_cmake() else {
        skip("no cmake (PATH, $MLFF_CMAKE or .venv/bin/cmake; scripts/setup-venv.sh installs one)");
        return;
    };
    if !have("cc") || !have("c++") {
        skip("no C/C++ compiler; the CMake consumer was not built");
        return;
    }
    let dir = scratch("cmake");
    let inputs = write_inputs(&dir);
    let build = dir.join("build");
    let lib = library_dir();
    let mut configure = Command::new(&cmake);
    configure
        .arg("-S")
        .arg(root().join("tests/cpp"))
        .arg("-B")
        .arg(&build)
        .arg(format!("-Dmlff_DIR={}", root().join("cmake").display()));
    // The release test run (scripts/test-c-abi.sh) finds the library where the package
    // looks by default; a debug run points the package at this build's library.
    if lib != root().join("target/release") {
        configure.arg(format!(
            "-DMLFF_LIBRARY={}",
            lib.join("libmlff.so").display()
        ));
    }
    run_ok(&mut configure);
    run_ok(Command::new(&cmake).arg("--build").arg(&build));
    // No LD_LIBRARY_PATH: the imported target must have given the executables an RPATH.
    run_ok(
        Command::new(build.join("test_mlff_c"))
            .env_remove("LD_LIBRARY_PATH")
            .arg("check")
            .arg(&dir)
            .arg(cuda_available()),
    );
    run_ok(
        Command::new(build.join("test_mlff_cpp"))
            .env_remove("LD_LIBRARY_PATH")
            .arg(&dir)
            .arg(cuda_available()),
    );

    // A wrong MLFF_LIBRARY is a clear configure error, not a broken build later.
    let output = run(Command::new(&cmake)
        .arg("-S")
        .arg(root().join("tests/cpp"))
        .arg("-B")
        .arg(dir.join("bad-build"))
        .arg(format!("-Dmlff_DIR={}", root().join("cmake").display()))
        .arg("-DMLFF_LIBRARY=/nonexistent/libmlff.so"));
    assert!(
        !output.status.success(),
        "configure succeeded with a nonexistent MLFF_LIBRARY"
    );
    let text = String::from_utf8_lossy(&output.stderr) + String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("/nonexistent/libmlff.so") && text.contains("does not exist"),
        "unclear message:\n{text}"
    );
    inputs.expect("expected values");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Converts the public fixtures' models and compares energies (1e-9 eV), forces and
/// virials (1e-8) through the C API.
#[test]
fn public_fixtures_through_the_c_api() {
    let shared = root().join("../shared");
    let fixtures = shared.join("fixtures/student_public_fixtures.json");
    if !fixtures.exists() || !shared.join("models").is_dir() {
        skip_fixtures(&format!(
            "{} or {} is absent",
            fixtures.display(),
            shared.join("models").display()
        ));
        return;
    }
    let dir = scratch("fixtures");
    let Some(exe) = build_c(&dir) else { return };
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&fixtures).unwrap()).unwrap();
    let models = json["models"].as_object().expect("fixtures: models");
    let mut compared = 0;
    for (stem, structures) in models {
        let onnx = shared.join("models").join(format!("{stem}.onnx"));
        if !onnx.exists() {
            eprintln!(
                "fixtures: {} is absent, its fixtures are not compared",
                onnx.display()
            );
            continue;
        }
        let model = dir.join(format!("{stem}.safetensors"));
        mlff::convert::convert_model(&onnx, &model, None)
            .unwrap_or_else(|e| panic!("cannot convert {}: {e}", onnx.display()));
        let cases = dir.join(format!("{stem}.cases.txt"));
        std::fs::write(
            &cases,
            fixture_cases(structures.as_array().expect("fixtures: a list")),
        )
        .unwrap();
        run_ok(Command::new(&exe).arg("fixtures").arg(&model).arg(&cases));
        compared += 1;
    }
    assert!(compared > 0, "no fixture model could be compared");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The schnetpack PaiNN fixtures (committed, tests/data) through the C program: a
/// `painn` model works through the unchanged C ABI, as the plugins use it.
#[test]
fn painn_fixtures_through_the_c_api() {
    let dir = scratch("painn-fixtures");
    let Some(exe) = build_c(&dir) else { return };
    let data = root().join("tests/data");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("painn_fixtures.json")).unwrap())
            .unwrap();
    for stem in ["painn_b1", "painn_b5_shared_interactions"] {
        let model = dir.join(format!("{stem}.safetensors"));
        mlff::convert::convert_model(&data.join(format!("{stem}.pt")), &model, None)
            .unwrap_or_else(|e| panic!("cannot convert {stem}: {e}"));
        let cases = dir.join(format!("{stem}.cases.txt"));
        let structures = json["models"][stem]["structures"]
            .as_array()
            .expect("fixtures: a list");
        std::fs::write(&cases, fixture_cases(structures)).unwrap();
        run_ok(Command::new(&exe).arg("fixtures").arg(&model).arg(&cases));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn skip_fixtures(why: &str) {
    // The fixtures are private data: their absence is normal (CI), never a failure.
    eprintln!("SKIP public fixtures through the C API: {why}");
}

fn fixture_cases(structures: &[serde_json::Value]) -> String {
    let numbers = |v: &serde_json::Value| -> Vec<f64> {
        let mut out = Vec::new();
        fn walk(v: &serde_json::Value, out: &mut Vec<f64>) {
            match v {
                serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
                other => out.push(other.as_f64().expect("a number")),
            }
        }
        walk(v, &mut out);
        out
    };
    let mut out = String::from("mlff-cases-1\ncutoff 0\nnum_layers 0\nsupported 0\nwarnings 0\n");
    writeln!(out, "cases {}", structures.len()).unwrap();
    for s in structures {
        let z: Vec<i64> = s["numbers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        let pbc: Vec<bool> = s["pbc"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_bool().unwrap())
            .collect();
        let name = s["name"].as_str().unwrap();
        writeln!(out, "case {name} n_atoms {} n_local {}", z.len(), z.len()).unwrap();
        writeln!(
            out,
            "pbc {} {} {}",
            pbc[0] as u8, pbc[1] as u8, pbc[2] as u8
        )
        .unwrap();
        // An all-zero cell with no periodic axis is "no cell".
        let cell = numbers(&s["cell"]);
        list(
            &mut out,
            "cell",
            if cell.iter().all(|&c| c == 0.0) {
                vec![]
            } else {
                cell
            },
        );
        writeln!(
            out,
            "numbers {} {}",
            z.len(),
            z.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        )
        .unwrap();
        list(&mut out, "positions", numbers(&s["positions"]));
        writeln!(out, "energy {:?}", s["energy"].as_f64().unwrap()).unwrap();
        list(&mut out, "forces", numbers(&s["forces"]));
        list(&mut out, "virial", numbers(&s["virial"]));
        out.push_str("atom_energies 0\natom_virials 0\ntolerance 1e-9 1e-8\n");
    }
    out
}

/// Under valgrind: the full C check (every error path), then 10^4 computes with
/// errors and create/destroy cycles in between: no leak, no invalid access.
#[test]
fn valgrind_finds_no_leak_and_no_invalid_access() {
    if std::env::var("MLFF_VALGRIND").as_deref() != Ok("1") {
        eprintln!("SKIP valgrind run: set MLFF_VALGRIND=1 (scripts/test-c-abi.sh does, on a release build)");
        return;
    }
    if !have("valgrind") {
        skip("MLFF_VALGRIND=1 but valgrind is not installed");
        return;
    }
    let dir = scratch("valgrind");
    let inputs = write_inputs(&dir);
    let Some(exe) = build_c(&dir) else { return };
    let iterations = std::env::var("MLFF_VALGRIND_ITERATIONS").unwrap_or_else(|_| "10000".into());
    let valgrind = |args: &[&std::ffi::OsStr]| {
        let log = dir.join("valgrind.log");
        let output = run(Command::new("valgrind")
            .args([
                "--leak-check=full",
                "--show-leak-kinds=definite,indirect,possible",
                "--errors-for-leak-kinds=definite,indirect,possible",
                "--error-exitcode=1",
            ])
            .arg(format!(
                "--suppressions={}",
                root().join("tests/c/valgrind.supp").display()
            ))
            .arg(format!("--log-file={}", log.display()))
            .arg(&exe)
            .args(args));
        let report = std::fs::read_to_string(&log).unwrap_or_default();
        let summary: Vec<&str> = report
            .lines()
            .filter(|l| {
                l.contains("ERROR SUMMARY")
                    || l.contains("lost:")
                    || l.contains("in use at exit")
                    || l.contains("suppressed:")
            })
            .collect();
        eprintln!("valgrind {args:?}:\n{}", summary.join("\n"));
        assert!(
            output.status.success(),
            "valgrind reports errors or leaks (exit {}):\n{report}",
            output.status
        );
    };
    valgrind(&["check".as_ref(), dir.as_os_str(), cuda_available().as_ref()]);
    valgrind(&["loop".as_ref(), dir.as_os_str(), iterations.as_ref()]);
    inputs.expect("expected values");
    let _ = std::fs::remove_dir_all(&dir);
}

// ------------------------------------------- direct calls of the extern functions

fn last_error() -> String {
    unsafe { CStr::from_ptr(mlff_last_error()) }
        .to_str()
        .unwrap()
        .to_string()
}

fn create(path: &Path, options: Option<&MlffOptions>) -> (MlffStatus, *mut MlffModel) {
    let path = CString::new(path.to_str().unwrap()).unwrap();
    let mut model: *mut MlffModel = std::ptr::null_mut();
    let options = options.map_or(std::ptr::null(), |o| o as *const MlffOptions);
    let status = unsafe { mlff_model_create(path.as_ptr(), options, &mut model) };
    (status, model)
}

#[test]
fn out_of_range_options_are_invalid_arguments_not_undefined_behaviour() {
    let dir = scratch("options");
    let path = dir.join("model.safetensors");
    write_model(&path);
    for value in [-1, 3, 100, i32::MIN, i32::MAX] {
        let options = MlffOptions {
            device: value,
            ..mlff_options_default()
        };
        let (status, model) = create(&path, Some(&options));
        assert_eq!(status, MlffStatus::MLFF_ERR_INVALID_ARGUMENT);
        assert!(model.is_null());
        assert!(
            last_error().contains(&format!("device = {value}")),
            "{}",
            last_error()
        );
        let options = MlffOptions {
            precision: value,
            ..mlff_options_default()
        };
        let (status, _) = create(&path, Some(&options));
        assert_eq!(status, MlffStatus::MLFF_ERR_INVALID_ARGUMENT);
        assert!(
            last_error().contains(&format!("precision = {value}")),
            "{}",
            last_error()
        );
    }
    let options = MlffOptions {
        device: MLFF_DEVICE_CPU,
        precision: MLFF_PRECISION_MIXED,
        ..mlff_options_default()
    };
    let (status, model) = create(&path, Some(&options));
    assert_eq!(status, MlffStatus::MLFF_OK, "{}", last_error());
    assert_eq!(last_error(), "");
    let mut precision = -1;
    assert_eq!(
        unsafe { mlff_model_precision(model, &mut precision) },
        MlffStatus::MLFF_OK
    );
    assert_eq!(precision, MLFF_PRECISION_MIXED);
    unsafe { mlff_model_destroy(model) };
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn options_default_and_null_options_agree() {
    let defaults = mlff_options_default();
    assert_eq!(
        defaults,
        MlffOptions {
            device: MLFF_DEVICE_AUTO,
            device_index: 0,
            precision: MLFF_PRECISION_F32,
            num_threads: 0
        }
    );
    let dir = scratch("null-options");
    let path = dir.join("model.safetensors");
    write_model(&path);
    let (status, model) = create(&path, None);
    assert_eq!(status, MlffStatus::MLFF_OK, "{}", last_error());
    let mut precision = -1;
    assert_eq!(
        unsafe { mlff_model_precision(model, &mut precision) },
        MlffStatus::MLFF_OK
    );
    assert_eq!(
        precision, MLFF_PRECISION_F32,
        "options == NULL must mean the defaults"
    );
    unsafe { mlff_model_destroy(model) };
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_last_error_is_per_thread_and_survives_getters_and_destroy() {
    let (status, _) = create(Path::new("/nonexistent/model.safetensors"), None);
    assert_eq!(status, MlffStatus::MLFF_ERR_IO);
    let message = last_error();
    assert!(
        message.starts_with("mlff_model_create: ")
            && message.contains("/nonexistent/model.safetensors"),
        "{message}"
    );
    // Another thread has its own, empty, last error.
    let other = std::thread::spawn(last_error).join().unwrap();
    assert_eq!(other, "");
    // destroy and version do not touch it.
    unsafe { mlff_model_destroy(std::ptr::null_mut()) };
    let _ = mlff_version();
    assert_eq!(last_error(), message);
    // A getter given NULL reports it; the pointer stays valid until the next call.
    assert!(unsafe { mlff_model_cutoff(std::ptr::null()) }.is_nan());
    assert!(
        last_error().contains("mlff_model_cutoff") && last_error().contains("model"),
        "{}",
        last_error()
    );
    assert_eq!(unsafe { mlff_model_num_layers(std::ptr::null()) }, 0);
}

#[test]
fn status_values_are_the_documented_numbers() {
    // The numbers are the ABI: they may never change.
    let expected = [
        (MlffStatus::MLFF_OK, 0),
        (MlffStatus::MLFF_ERR_NULL_POINTER, 1),
        (MlffStatus::MLFF_ERR_INVALID_ARGUMENT, 2),
        (MlffStatus::MLFF_ERR_IO, 3),
        (MlffStatus::MLFF_ERR_MODEL_FORMAT, 4),
        (MlffStatus::MLFF_ERR_DEVICE, 5),
        (MlffStatus::MLFF_ERR_OUT_OF_MEMORY, 6),
        (MlffStatus::MLFF_ERR_INTERNAL, 255),
    ];
    for (status, value) in expected {
        assert_eq!(status as i32, value, "{status:?}");
    }
    assert_eq!(
        (MLFF_DEVICE_AUTO, MLFF_DEVICE_CPU, MLFF_DEVICE_CUDA),
        (0, 1, 2)
    );
    assert_eq!(
        (MLFF_PRECISION_F32, MLFF_PRECISION_F64, MLFF_PRECISION_MIXED),
        (0, 1, 2)
    );
    assert_eq!(mlff_abi_version(), MLFF_ABI_VERSION);
    // The layouts C sees (x86-64 / aarch64 LP64).
    assert_eq!(std::mem::size_of::<MlffOptions>(), 16);
    assert_eq!(std::mem::size_of::<MlffSystem>(), 48);
    assert_eq!(std::mem::size_of::<MlffResults>(), 40);
    assert_eq!(std::mem::size_of::<MlffStatus>(), 4);
}

/// `mlff_model_compute_device` on a CPU model, and both device entry points on a
/// machine without CUDA, fail with MLFF_ERR_DEVICE and a message; NULL arguments
/// are NULL-pointer errors; nothing is written on failure.
#[test]
fn device_entry_points_refuse_cleanly_without_the_cuda_engine() {
    let dir = scratch("device");
    let path = dir.join("model.safetensors");
    write_model(&path);
    let options = MlffOptions {
        device: MLFF_DEVICE_CPU,
        ..mlff_options_default()
    };
    let (status, model) = create(&path, Some(&options));
    assert_eq!(status, MlffStatus::MLFF_OK, "{}", last_error());
    let numbers = [8, 1, 1];
    let fake_device_positions = 0x1000 as *const f64;
    let system = MlffDeviceSystem {
        n_atoms: 3,
        n_local: 3,
        numbers: numbers.as_ptr(),
        positions: fake_device_positions,
        cell: std::ptr::null(),
        pbc: [false; 3],
    };
    let mut results = MlffDeviceResults {
        energy: 123.0,
        forces: std::ptr::null_mut(),
        virial: std::ptr::null_mut(),
    };
    let status =
        unsafe { mlff_model_compute_device(model, &system, &mut results, std::ptr::null_mut()) };
    assert_eq!(status, MlffStatus::MLFF_ERR_DEVICE);
    let message = last_error();
    assert!(
        message.contains("mlff_model_compute_device") && message.contains("CUDA engine"),
        "{message}"
    );
    assert_eq!(results.energy, 123.0, "written on failure");
    let null_model = std::ptr::null_mut();
    let status = unsafe {
        mlff_model_compute_device(null_model, &system, &mut results, std::ptr::null_mut())
    };
    assert_eq!(status, MlffStatus::MLFF_ERR_NULL_POINTER);
    assert!(last_error().contains("`model`"), "{}", last_error());
    let status = unsafe {
        mlff_model_compute_device(model, std::ptr::null(), &mut results, std::ptr::null_mut())
    };
    assert_eq!(status, MlffStatus::MLFF_ERR_NULL_POINTER);
    assert!(last_error().contains("`system`"), "{}", last_error());
    let status = unsafe {
        mlff_model_compute_device(model, &system, std::ptr::null_mut(), std::ptr::null_mut())
    };
    assert_eq!(status, MlffStatus::MLFF_ERR_NULL_POINTER);
    assert!(last_error().contains("`results`"), "{}", last_error());
    unsafe { mlff_model_destroy(model) };

    let cpath = CString::new(path.to_str().unwrap()).unwrap();
    let mut out: *mut MlffModel = std::ptr::null_mut();
    let cpu = MlffOptions {
        device: MLFF_DEVICE_CPU,
        ..mlff_options_default()
    };
    let status = unsafe {
        mlff_model_create_in_cuda_context(cpath.as_ptr(), &cpu, std::ptr::null_mut(), &mut out)
    };
    assert_eq!(status, MlffStatus::MLFF_ERR_INVALID_ARGUMENT);
    assert!(out.is_null());
    if !mlff::engine::cuda::is_available() {
        let status = unsafe {
            mlff_model_create_in_cuda_context(
                cpath.as_ptr(),
                std::ptr::null(),
                std::ptr::null_mut(),
                &mut out,
            )
        };
        assert_eq!(status, MlffStatus::MLFF_ERR_DEVICE);
        assert!(out.is_null());
        assert!(last_error().contains("CUDA"), "{}", last_error());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `mlff_cuda_device_count`: 0 exactly when a CUDA model cannot be created for lack
/// of a usable GPU; NULL output is refused.
#[test]
fn cuda_device_count_agrees_with_the_engine() {
    let mut count = usize::MAX;
    // SAFETY: a writable usize.
    assert_eq!(
        unsafe { mlff_cuda_device_count(&mut count) },
        MlffStatus::MLFF_OK
    );
    assert_eq!(count, mlff::engine::cuda::device_count());
    assert_eq!(count > 0, mlff::engine::cuda::is_available());
    // SAFETY: NULL is allowed and refused.
    assert_eq!(
        unsafe { mlff_cuda_device_count(std::ptr::null_mut()) },
        MlffStatus::MLFF_ERR_NULL_POINTER
    );
    if count == 0 {
        let file = mlff::model::load_model_bytes(
            &save_model_bytes(&random_student(&test_config(), 3), false, &[]).unwrap(),
        )
        .unwrap();
        let options = Options {
            device: Device::Cuda,
            ..Options::default()
        };
        assert!(matches!(
            Model::from_file(file, &options),
            Err(mlff::Error::Device(_))
        ));
    }
}

/// `mlff_model_compute_batch` writes each structure's forces straight into its buffer
/// when no forces buffer shares memory with another or with an input; otherwise it
/// falls back to writing them one after another, as before. Both give the single
/// calls' forces (bitwise); two structures sharing one buffer end with the second's.
#[test]
fn batch_forces_buffers_that_alias_fall_back_to_ordered_writes() {
    let dir = scratch("batch-alias");
    let path = dir.join("model.safetensors");
    write_model(&path);
    let options = f64_cpu();
    let mut model = Model::load(&path, &options).unwrap();
    let structures = test_structures();
    let (a, b) = (&structures[0], &structures[1]);
    let single_a = model.compute(&a.system(), &Request::FORCES_VIRIAL).unwrap();
    let single_b = model.compute(&b.system(), &Request::FORCES_VIRIAL).unwrap();
    let mlff_options = MlffOptions {
        device: MLFF_DEVICE_CPU,
        precision: MLFF_PRECISION_F64,
        ..mlff_options_default()
    };
    let (status, handle) = create(&path, Some(&mlff_options));
    assert_eq!(status, MlffStatus::MLFF_OK, "{}", last_error());
    let ffi_system = |s: &Structure| MlffSystem {
        n_atoms: s.numbers.len(),
        n_local: s.n_local,
        numbers: s.numbers.as_ptr(),
        positions: s.positions.as_ptr().cast(),
        cell: s
            .cell
            .as_ref()
            .map_or(std::ptr::null(), |c| c.as_ptr().cast()),
        pbc: s.pbc,
    };
    let systems = [ffi_system(a), ffi_system(b)];
    let (na, nb) = (a.numbers.len(), b.numbers.len());
    let results = |fa: *mut f64, fb: *mut f64| {
        [fa, fb].map(|forces| MlffResults {
            energy: 0.0,
            forces,
            virial: std::ptr::null_mut(),
            atom_energies: std::ptr::null_mut(),
            atom_virials: std::ptr::null_mut(),
        })
    };
    let flat = |rows: &[[f64; 3]]| rows.iter().flatten().copied().collect::<Vec<f64>>();
    // Separate buffers: the direct path.
    let (mut fa, mut fb) = (vec![f64::NAN; 3 * na], vec![f64::NAN; 3 * nb]);
    let mut out = results(fa.as_mut_ptr(), fb.as_mut_ptr());
    let status = unsafe { mlff_model_compute_batch(handle, systems.as_ptr(), 2, out.as_mut_ptr()) };
    assert_eq!(status, MlffStatus::MLFF_OK, "{}", last_error());
    assert!(fa == flat(&single_a.forces) && fb == flat(&single_b.forces));
    assert_eq!(
        (out[0].energy, out[1].energy),
        (single_a.energy, single_b.energy)
    );
    // One buffer for both (the larger structure's size): written in order.
    let mut shared = vec![f64::NAN; 3 * na.max(nb)];
    let mut out = results(shared.as_mut_ptr(), shared.as_mut_ptr());
    let status = unsafe { mlff_model_compute_batch(handle, systems.as_ptr(), 2, out.as_mut_ptr()) };
    assert_eq!(status, MlffStatus::MLFF_OK, "{}", last_error());
    assert!(shared[..3 * nb] == flat(&single_b.forces)[..]);
    unsafe { mlff_model_destroy(handle) };
}
