//! Compiles every CUDA kernel with NVRTC (no GPU needed) for the given architectures
//! and hidden widths, so that a kernel that does not compile fails CI.
//! Usage: mlff-check-kernels [ARCH...]   (default: sm_80 sm_90 sm_90a; sm_90a is what
//! the engine compiles for on an H100, the only target of update_wgmma.cu's wgmma code)
//! Needs libnvrtc.so.13 on LD_LIBRARY_PATH (scripts/check-kernels.sh sets it up).
//! With MLFF_PTX_DIR set, writes each PTX there (`mlff_<arch>_h<H>.ptx`) for reading.

fn main() {
    let mut archs: Vec<String> = std::env::args().skip(1).collect();
    if archs.is_empty() {
        archs = vec!["sm_80".into(), "sm_90".into(), "sm_90a".into()];
    }
    if !mlff::engine::cuda::is_nvrtc_available() {
        eprintln!("error: NVRTC (libnvrtc.so.13) not found; put the nvidia-cuda-nvrtc wheel's lib directory on LD_LIBRARY_PATH");
        std::process::exit(2);
    }
    let mut failed = false;
    for arch in &archs {
        for hidden in [32, 64, 128] {
            let start = std::time::Instant::now();
            match mlff::engine::cuda::compile_kernels(arch, hidden) {
                Ok(ptx) => {
                    let entries = ptx.matches(".entry").count();
                    if let Some(dir) = std::env::var_os("MLFF_PTX_DIR") {
                        let path =
                            std::path::Path::new(&dir).join(format!("mlff_{arch}_h{hidden}.ptx"));
                        if let Err(e) = std::fs::write(&path, &ptx) {
                            failed = true;
                            println!("FAIL {arch} H={hidden}: writing {}: {e}", path.display());
                        }
                    }
                    use mlff::engine::cuda::kernels::{ENTRY_POINTS, H128_ENTRY_POINTS};
                    let h128: &[&str] = if hidden == 128 {
                        H128_ENTRY_POINTS
                    } else {
                        &[]
                    };
                    let missing: Vec<&str> = ENTRY_POINTS
                        .iter()
                        .chain(h128)
                        .copied()
                        .filter(|name| !ptx.contains(&format!(".entry {name}(")))
                        .collect();
                    if !missing.is_empty() {
                        failed = true;
                        println!("FAIL {arch} H={hidden}: entry points missing from the PTX: {missing:?}");
                        continue;
                    }
                    println!(
                        "ok   {arch} H={hidden}: {entries} kernels, {} bytes of PTX, {:.1} s",
                        ptx.len(),
                        start.elapsed().as_secs_f64()
                    );
                }
                Err(e) => {
                    failed = true;
                    println!("FAIL {arch} H={hidden}: {e}");
                }
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}
