//! Options chosen when a model is opened.

/// Where to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// CUDA when a usable GPU, driver and NVRTC are present, else the CPU.
    Auto,
    Cpu,
    Cuda,
}

/// Arithmetic precision of the engine. Neighbour lists are always built in f64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// f32 everywhere (default).
    F32,
    /// f64 everywhere: the reference.
    F64,
    /// BF16/FP16 matrix operands with f32 accumulation (GPU); the CPU engine runs f32.
    Mixed,
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" | "single" => Ok(Precision::F32),
            "f64" | "float64" | "double" => Ok(Precision::F64),
            "mixed" => Ok(Precision::Mixed),
            _ => Err(format!(
                "unknown precision `{s}` (expected f32, f64 or mixed)"
            )),
        }
    }
}

impl std::str::FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Device::Auto),
            "cpu" => Ok(Device::Cpu),
            "cuda" | "gpu" => Ok(Device::Cuda),
            _ => Err(format!("unknown device `{s}` (expected auto, cpu or cuda)")),
        }
    }
}

/// How to open a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub device: Device,
    /// CUDA device ordinal (ignored on the CPU).
    pub device_index: i32,
    pub precision: Precision,
    /// CPU threads; 0 means `MLFF_NUM_THREADS`, else `OMP_NUM_THREADS`, else all cores.
    pub num_threads: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            device: Device::Auto,
            device_index: 0,
            precision: Precision::F32,
            num_threads: 0,
        }
    }
}

/// Resolves a requested thread count (0 = from the environment, else all cores).
pub fn resolve_num_threads(requested: u32) -> usize {
    if requested > 0 {
        return requested as usize;
    }
    for var in ["MLFF_NUM_THREADS", "OMP_NUM_THREADS"] {
        if let Ok(text) = std::env::var(var) {
            // OMP_NUM_THREADS may be a list ("4,2"); the first entry is ours.
            if let Ok(n) = text.split(',').next().unwrap_or("").trim().parse::<usize>() {
                if n > 0 {
                    return n;
                }
            }
        }
    }
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
