//! include/mlff.h is generated from src/ffi/ by cbindgen (pinned in Cargo.toml) and
//! committed. This test regenerates it in memory and fails if the committed file
//! differs; `MLFF_BLESS=1 cargo test --test header` rewrites it. It also checks
//! that the header compiles cleanly as C and C++ with strict warnings.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn generate() -> String {
    let root = root();
    let config =
        cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml is valid");
    // Only src/ffi/: the C API is exactly what that module declares.
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/ffi/mod.rs"))
        .generate()
        .expect("cbindgen generates the header");
    let mut bytes = Vec::new();
    bindings.write(&mut bytes);
    String::from_utf8(bytes).expect("the header is UTF-8")
}

#[test]
fn committed_header_is_up_to_date() {
    let path = root().join("include/mlff.h");
    let generated = generate();
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if generated == committed {
        return;
    }
    if std::env::var_os("MLFF_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
        eprintln!("rewrote {}", path.display());
        return;
    }
    let first_difference = generated
        .lines()
        .zip(committed.lines())
        .enumerate()
        .find(|(_, (g, c))| g != c)
        .map(|(i, (g, c))| format!("line {}:\n  committed: {c}\n  generated: {g}", i + 1))
        .unwrap_or_else(|| {
            format!(
                "lengths differ: committed {} lines, generated {}",
                committed.lines().count(),
                generated.lines().count()
            )
        });
    panic!(
        "include/mlff.h is out of date with src/ffi/ (first difference at {first_difference}).\n\
         Regenerate it with:  MLFF_BLESS=1 cargo test --test header\n\
         and commit the result (review the diff: it is the C ABI)."
    );
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn compile(compiler: &str, args: &[&str], source: &Path) {
    let output = Command::new(compiler)
        .args(args)
        .args([
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-fsyntax-only",
            "-I",
        ])
        .arg(root().join("include"))
        .arg(source)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {compiler}: {e}"));
    assert!(
        output.status.success(),
        "{compiler} {args:?} rejects include/mlff.h:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn header_compiles_as_c_and_cpp_with_strict_warnings() {
    let dir = std::env::temp_dir().join(format!("mlff-header-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Uses every type so that a broken declaration cannot hide; valid C and C++.
    let body = r#"#include "mlff.h"
#include "mlff.h" /* the include guard works */
int check(void);
int check(void) {
    MlffOptions options = mlff_options_default();
    MlffSystem system = {0, 0, NULL, NULL, NULL, {false, false, false}};
    MlffResults results = {0.0, NULL, NULL, NULL, NULL};
    MlffModel *model = NULL;
    MlffDevice device = MLFF_DEVICE_CPU;
    MlffPrecision precision = MLFF_PRECISION_F64;
    MlffStatus status = mlff_model_create("x", &options, &model);
    (void)device; (void)precision;
    if (status == MLFF_OK) { status = mlff_model_compute(model, &system, &results); }
    mlff_model_destroy(model);
    return (int)status + (int)MLFF_ABI_VERSION;
}
"#;
    let c_source = dir.join("use_header.c");
    let cpp_source = dir.join("use_header.cpp");
    std::fs::write(&c_source, body).unwrap();
    std::fs::write(&cpp_source, body).unwrap();
    let mut compiled = 0;
    if have("cc") {
        for standard in ["-std=c99", "-std=c11", "-std=c2x"] {
            compile("cc", &[standard], &c_source);
        }
        compiled += 1;
    } else {
        eprintln!("SKIP C compile of include/mlff.h: no `cc` on PATH");
    }
    if have("c++") {
        for standard in ["-std=c++11", "-std=c++17", "-std=c++20"] {
            compile("c++", &[standard], &cpp_source);
        }
        compiled += 1;
    } else {
        eprintln!("SKIP C++ compile of include/mlff.h: no `c++` on PATH");
    }
    let _ = std::fs::remove_dir_all(&dir);
    if compiled == 0 {
        eprintln!("SKIP: no compiler found; the header was not compiled");
    }
}
