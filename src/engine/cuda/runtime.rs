//! Finding the CUDA driver and NVRTC at run time, and compiling the kernels.
//!
//! cudarc panics when a library it needs is missing, so every entry point here
//! first checks that the library can be opened (and catches panics as a second
//! line of defence): a machine without a GPU gets `false` or a clean `Error::Device`.
//!
//! Kernels (`kernels/*.cu`) are compiled by NVRTC for the device's architecture at
//! first use and cached on disk as PTX under `$MLFF_CACHE_DIR`, else
//! `$XDG_CACHE_HOME/mlff`, else `~/.cache/mlff`; the file name holds a hash of the
//! source and options, the architecture and the driver version.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use cudarc::driver::{sys, CudaContext, CudaStream, DriverError};
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// The kernel sources, in the order they are compiled (common.cuh first).
pub const KERNEL_SOURCES: &[(&str, &str)] = &[
    ("common.cuh", include_str!("../../../kernels/common.cuh")),
    ("embed.cu", include_str!("../../../kernels/embed.cu")),
    (
        "pair_geometry.cu",
        include_str!("../../../kernels/pair_geometry.cu"),
    ),
    (
        "edge_order.cu",
        include_str!("../../../kernels/edge_order.cu"),
    ),
    (
        "edge_order_records.cu",
        include_str!("../../../kernels/edge_order_records.cu"),
    ),
    ("message.cu", include_str!("../../../kernels/message.cu")),
    ("update.cu", include_str!("../../../kernels/update.cu")),
    ("readout.cu", include_str!("../../../kernels/readout.cu")),
    (
        "update_backward.cu",
        include_str!("../../../kernels/update_backward.cu"),
    ),
    (
        "message_backward.cu",
        include_str!("../../../kernels/message_backward.cu"),
    ),
    (
        "pair_gradient.cu",
        include_str!("../../../kernels/pair_gradient.cu"),
    ),
    (
        "edge_backward.cu",
        include_str!("../../../kernels/edge_backward.cu"),
    ),
    (
        "pair_backward.cu",
        include_str!("../../../kernels/pair_backward.cu"),
    ),
    (
        "atom_gather.cu",
        include_str!("../../../kernels/atom_gather.cu"),
    ),
    ("reduce.cu", include_str!("../../../kernels/reduce.cu")),
    (
        "update_tiled.cu",
        include_str!("../../../kernels/update_tiled.cu"),
    ),
    (
        "readout_tiled.cu",
        include_str!("../../../kernels/readout_tiled.cu"),
    ),
    (
        "update_backward_tiled.cu",
        include_str!("../../../kernels/update_backward_tiled.cu"),
    ),
    (
        "update_wgmma.cu",
        include_str!("../../../kernels/update_wgmma.cu"),
    ),
    (
        "update_cluster.cu",
        include_str!("../../../kernels/update_cluster.cu"),
    ),
    (
        "message_update_cluster.cu",
        include_str!("../../../kernels/message_update_cluster.cu"),
    ),
    (
        "update_backward_cluster.cu",
        include_str!("../../../kernels/update_backward_cluster.cu"),
    ),
    (
        "reduce_systems.cu",
        include_str!("../../../kernels/reduce_systems.cu"),
    ),
    (
        "atom_gather_reduce.cu",
        include_str!("../../../kernels/atom_gather_reduce.cu"),
    ),
    (
        "atom_order.cu",
        include_str!("../../../kernels/atom_order.cu"),
    ),
    (
        "neighbor_list.cu",
        include_str!("../../../kernels/neighbor_list.cu"),
    ),
    (
        "neighbor_bins.cu",
        include_str!("../../../kernels/neighbor_bins.cu"),
    ),
    (
        "painn_dense.cu",
        include_str!("../../../kernels/painn_dense.cu"),
    ),
    (
        "painn_dense_backward.cu",
        include_str!("../../../kernels/painn_dense_backward.cu"),
    ),
    (
        "painn_message.cu",
        include_str!("../../../kernels/painn_message.cu"),
    ),
    (
        "painn_message_backward.cu",
        include_str!("../../../kernels/painn_message_backward.cu"),
    ),
    (
        "painn_mixing.cu",
        include_str!("../../../kernels/painn_mixing.cu"),
    ),
    (
        "painn_mixing_update.cu",
        include_str!("../../../kernels/painn_mixing_update.cu"),
    ),
    (
        "painn_mixing_output_grad.cu",
        include_str!("../../../kernels/painn_mixing_output_grad.cu"),
    ),
    (
        "painn_mixing_input_grad.cu",
        include_str!("../../../kernels/painn_mixing_input_grad.cu"),
    ),
    (
        "painn_pair_gradient.cu",
        include_str!("../../../kernels/painn_pair_gradient.cu"),
    ),
    (
        "painn_distance_gradient.cu",
        include_str!("../../../kernels/painn_distance_gradient.cu"),
    ),
    (
        "painn_pair_basis.cu",
        include_str!("../../../kernels/painn_pair_basis.cu"),
    ),
];

/// Atoms per block in the per-atom MLP kernels of large systems (f32; f64 uses half):
/// `MLFF_CUDA_TILE` (1 to 32) for tuning, default 16.
pub fn tile() -> usize {
    static TILE: OnceLock<usize> = OnceLock::new();
    *TILE.get_or_init(|| env_choice("MLFF_CUDA_TILE", 16, |t| (1..=32).contains(&t)))
}

/// Thread slices splitting the weight loops of the f32 update kernels of large systems
/// (`MLFF_CUDA_MLP_SLICES`: 1, 2 or 4, for tuning; default 1). Blocks get
/// hidden x slices threads.
pub fn mlp_slices() -> usize {
    static SLICES: OnceLock<usize> = OnceLock::new();
    *SLICES.get_or_init(|| env_choice("MLFF_CUDA_MLP_SLICES", 1, |s| [1, 2, 4].contains(&s)))
}

fn env_choice(name: &str, default: usize, allowed: impl Fn(usize) -> bool) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|v| allowed(*v))
        .unwrap_or(default)
}

/// The whole program: every source with a `#line` marker so errors name the file.
pub fn kernel_program() -> String {
    let mut text = String::new();
    for (name, source) in KERNEL_SOURCES {
        text.push_str(&format!("#line 1 \"{name}\"\n"));
        text.push_str(source);
        text.push('\n');
    }
    text
}

/// Extra `-DNAME=VALUE` definitions from `MLFF_CUDA_DEFINES` (space-separated), for
/// tuning experiments that compare kernel variants in one run; anything but a `-D`
/// option is ignored. Part of the cache key like every option.
fn extra_defines() -> Vec<String> {
    std::env::var("MLFF_CUDA_DEFINES")
        .unwrap_or_default()
        .split_whitespace()
        .filter(|d| d.starts_with("-D") && d.len() > 2)
        .map(str::to_string)
        .collect()
}

fn compile_options(arch: &str, hidden: usize) -> Vec<String> {
    let mut options = vec![
        format!("--gpu-architecture={arch}"),
        format!("-DHIDDEN={hidden}"),
        format!("-DTILE={}", tile()),
        format!("-DMLP_SLICES={}", mlp_slices()),
        format!("-DPOLY_THREADS={}", super::kernels::poly_threads()),
        format!(
            "-DEDGE_ORDER_THREADS={}",
            super::kernels::edge_order_threads()
        ),
        format!(
            "-DPOLY_MESSAGE_THREADS={}",
            super::kernels::message_threads()
        ),
        format!("-DPOLY_MERGE={}", super::kernels::poly_merge()),
        format!(
            "-DEDGE_ORDER_MERGED_THREADS={}",
            super::kernels::edge_order_merged_threads()
        ),
        // The polynomial tables' layouts (spline.rs builds them, the kernels read them).
        format!(
            "-DPOLY_GRAD_LANE_FLOATS={}",
            super::spline::POLY_GRAD.lane_floats
        ),
        format!(
            "-DPOLY_VALUE_LANE_FLOATS={}",
            super::spline::POLY_VALUE.lane_floats
        ),
        "-std=c++17".into(),
    ];
    options.extend(extra_defines());
    options
}

/// Directories where libnvrtc may live when it is not on the loader's path.
fn nvrtc_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("MLFF_NVRTC_DIR") {
        dirs.push(PathBuf::from(dir));
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(home) = std::env::var_os(var) {
            dirs.push(PathBuf::from(&home).join("lib64"));
            dirs.push(PathBuf::from(&home).join("lib"));
        }
    }
    dirs.push(PathBuf::from("/usr/local/cuda/lib64"));
    dirs.push(PathBuf::from("/usr/local/cuda/targets/x86_64-linux/lib"));
    dirs
}

static NVRTC: OnceLock<bool> = OnceLock::new();

/// Whether libnvrtc (CUDA 13) can be loaded; preloads it from the usual places if
/// the loader alone cannot find it (cudarc then finds it by its soname).
pub fn nvrtc_available() -> bool {
    *NVRTC.get_or_init(|| {
        // SAFETY: opening a shared library runs its initialisers; NVRTC's are benign.
        if unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return true;
        }
        for dir in nvrtc_dirs() {
            let lib = dir.join("libnvrtc.so.13");
            if lib.exists() {
                let builtins = dir.join("libnvrtc-builtins.so.13.0");
                // SAFETY: as above; the handles are leaked on purpose so the libraries stay loaded.
                unsafe {
                    if builtins.exists() {
                        if let Ok(b) = libloading::Library::new(&builtins) {
                            std::mem::forget(b);
                        }
                    }
                    if let Ok(l) = libloading::Library::new(&lib) {
                        std::mem::forget(l);
                        if cudarc::nvrtc::sys::is_culib_present() {
                            return true;
                        }
                    }
                }
            }
        }
        false
    })
}

static DRIVER: OnceLock<bool> = OnceLock::new();

/// Whether libcuda can be loaded and initialised (no GPU: false, never a panic).
pub fn driver_available() -> bool {
    *DRIVER.get_or_init(|| {
        // SAFETY: dlopen of the driver library; the handle is dropped again.
        let present = unsafe {
            libloading::Library::new("libcuda.so.1").is_ok()
                || libloading::Library::new("libcuda.so").is_ok()
        };
        if !present {
            return false;
        }
        catch_unwind(|| {
            // SAFETY: cudarc checked above that the library exists.
            let present = unsafe { cudarc::driver::sys::is_culib_present() };
            present
                && cudarc::driver::result::init().is_ok()
                && cudarc::driver::result::device::get_count()
                    .map(|n| n > 0)
                    .unwrap_or(false)
        })
        .unwrap_or(false)
    })
}

/// Driver API version (e.g. 13000), 0 when unknown.
pub fn driver_version() -> i32 {
    let mut version = 0;
    if driver_available() {
        // SAFETY: the driver is loaded and initialised; the out-pointer is valid.
        let _ = catch_unwind(AssertUnwindSafe(|| unsafe {
            cudarc::driver::sys::cuDriverGetVersion(&mut version)
        }));
    }
    version
}

/// Compiles the kernels for `arch` (e.g. "sm_90") and hidden width `hidden` to PTX. Needs NVRTC only.
pub fn compile_ptx(arch: &str, hidden: usize) -> Result<String> {
    if !nvrtc_available() {
        return Err(Error::Device(
            "NVRTC (libnvrtc.so.13) not found: install the CUDA 13 toolkit or the nvidia-cuda-nvrtc wheel and add its lib directory to LD_LIBRARY_PATH (or set MLFF_NVRTC_DIR)".into(),
        ));
    }
    let options = compile_options(arch, hidden);
    let program = kernel_program();
    let result = catch_unwind(AssertUnwindSafe(|| {
        let opts = cudarc::nvrtc::CompileOptions {
            options: options.clone(),
            name: Some("mlff_kernels.cu".into()),
            ..Default::default()
        };
        cudarc::nvrtc::compile_ptx_with_opts(&program, opts)
    }))
    .map_err(|_| Error::Device("NVRTC panicked while compiling the kernels".into()))?;
    match result {
        Ok(ptx) => Ok(ptx.to_src()),
        Err(cudarc::nvrtc::CompileError::CompileError { log, .. }) => Err(Error::Device(format!(
            "kernel compilation failed for {arch}:\n{}",
            log.to_string_lossy()
        ))),
        Err(e) => Err(Error::Device(format!(
            "kernel compilation failed for {arch}: {e}"
        ))),
    }
}

/// FNV-1a, 64 bit: a stable hash for cache keys.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("MLFF_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("mlff"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("mlff"))
}

/// PTX for this device, from the disk cache or freshly compiled (and then cached;
/// a cache that cannot be written is skipped silently).
pub fn cached_ptx(arch: &str, hidden: usize) -> Result<String> {
    let mut key_text = kernel_program();
    key_text.push('\0');
    key_text.push_str(&compile_options(arch, hidden).join(" "));
    let key = format!(
        "kernels-{:016x}-{arch}-driver{}.ptx",
        fnv1a(key_text.as_bytes()),
        driver_version()
    );
    let path = cache_dir().map(|d| d.join(&key));
    if let Some(path) = &path {
        if let Ok(text) = std::fs::read_to_string(path) {
            if text.contains(".entry") {
                return Ok(text);
            }
        }
    }
    let ptx = compile_ptx(arch, hidden)?;
    if let Some(path) = &path {
        if let Some(dir) = path.parent() {
            if std::fs::create_dir_all(dir).is_ok() {
                let tmp = dir.join(format!("{key}.{}.tmp", std::process::id()));
                if std::fs::write(&tmp, &ptx).is_ok() {
                    let _ = std::fs::rename(&tmp, path);
                }
            }
        }
    }
    Ok(ptx)
}

/// A CUDA graph instantiated by mlff, for the captured step of a small system with its
/// kernel-to-kernel edges made programmatic (`make_edges_programmatic`). cudarc's
/// `CudaGraph` instantiates the graph as captured and keeps owning it; this is a second
/// executable of the same graph, destroyed with its owner.
pub struct GraphExec {
    exec: sys::CUgraphExec,
    ctx: Arc<CudaContext>,
}

impl GraphExec {
    /// Instantiates `graph`.
    ///
    /// # Safety
    /// `graph` must be a valid graph of `ctx`.
    pub unsafe fn instantiate(
        graph: sys::CUgraph,
        ctx: &Arc<CudaContext>,
    ) -> std::result::Result<Self, DriverError> {
        ctx.bind_to_thread()?;
        let mut exec = std::ptr::null_mut();
        // SAFETY: per the caller, graph is valid; exec is a valid out-pointer.
        unsafe { sys::cuGraphInstantiateWithFlags(&mut exec, graph, 0) }.result()?;
        Ok(GraphExec {
            exec,
            ctx: ctx.clone(),
        })
    }

    /// Launches the whole graph on `stream` (asynchronous).
    pub fn launch(&self, stream: &CudaStream) -> std::result::Result<(), DriverError> {
        self.ctx.bind_to_thread()?;
        // SAFETY: exec is a live executable graph of this context; the stream belongs to it.
        unsafe { sys::cuGraphLaunch(self.exec, stream.cu_stream()) }.result()
    }
}

impl Drop for GraphExec {
    fn drop(&mut self) {
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: exec was instantiated here and is destroyed once.
            let _ = unsafe { sys::cuGraphExecDestroy(self.exec) };
        }
    }
}

/// Whether the captured graphs of small systems get programmatic kernel-to-kernel edges
/// (programmatic dependent launch): sm_90 or newer (where the kernels compile
/// `griddepcontrol`), a driver with the CUDA 12.3 graph-edge API, and not
/// `MLFF_CUDA_PDL=off`.
pub fn programmatic_launch(compute_major: i32) -> bool {
    compute_major >= 9
        && driver_version() >= 12030
        && std::env::var("MLFF_CUDA_PDL").ok().as_deref() != Some("off")
}

/// Turns every edge between two kernel nodes of `graph` into a programmatic edge (the
/// successor may launch once every block of the predecessor has passed
/// `wait_for_previous_kernel_` in kernels/common.cuh, and waits there for the
/// predecessor's completion and memory). Edges to or from copies and memsets stay full
/// dependencies. Returns the number of edges changed.
///
/// # Safety
/// `graph` must be a valid graph that nothing else uses meanwhile, and every kernel in
/// it must call `wait_for_previous_kernel_` before its first access to memory that an
/// earlier node writes or reads.
pub unsafe fn make_edges_programmatic(
    graph: sys::CUgraph,
) -> std::result::Result<usize, DriverError> {
    use sys::{CUgraphEdgeData, CUgraphNodeType};
    let mut count = 0usize;
    // SAFETY: null arrays ask for the number of edges only.
    unsafe {
        sys::cuGraphGetEdges_v2(
            graph,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut count,
        )
    }
    .result()?;
    let mut from = vec![std::ptr::null_mut(); count];
    let mut to = vec![std::ptr::null_mut(); count];
    // SAFETY: plain-old-data; overwritten by the driver below.
    let mut data: Vec<CUgraphEdgeData> = vec![unsafe { std::mem::zeroed() }; count];
    // SAFETY: the three arrays hold `count` entries each.
    unsafe {
        sys::cuGraphGetEdges_v2(
            graph,
            from.as_mut_ptr(),
            to.as_mut_ptr(),
            data.as_mut_ptr(),
            &mut count,
        )
    }
    .result()?;
    let is_kernel = |node: sys::CUgraphNode| -> std::result::Result<bool, DriverError> {
        let mut kind = CUgraphNodeType::CU_GRAPH_NODE_TYPE_EMPTY;
        // SAFETY: node comes from the graph's edge list.
        unsafe { sys::cuGraphNodeGetType(node, &mut kind) }.result()?;
        Ok(kind == CUgraphNodeType::CU_GRAPH_NODE_TYPE_KERNEL)
    };
    let mut changed = 0;
    for e in 0..count.min(from.len()) {
        if data[e].type_ != 0 || !is_kernel(from[e])? || !is_kernel(to[e])? {
            continue;
        }
        let mut programmatic = data[e];
        programmatic.from_port = sys::CU_GRAPH_KERNEL_NODE_PORT_PROGRAMMATIC as u8;
        programmatic.type_ =
            sys::CUgraphDependencyType::CU_GRAPH_DEPENDENCY_TYPE_PROGRAMMATIC as u8;
        // SAFETY: the edge exists (listed above) and is replaced by one between the same
        // two kernel nodes.
        unsafe {
            sys::cuGraphRemoveDependencies_v2(graph, &from[e], &to[e], &data[e], 1).result()?;
            sys::cuGraphAddDependencies_v2(graph, &from[e], &to[e], &programmatic, 1).result()?;
        }
        changed += 1;
    }
    Ok(changed)
}
