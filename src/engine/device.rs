//! Device selection: CUDA when present, else the CPU; the preset or the CLI can force either.

use tch::Device;

use crate::core::preset::{parse_device, DeviceRequest};
use crate::engine::EngineError;

/// Resolves a device string (`auto`, `cpu`, `cuda`, `cuda:N`) to a device that exists.
pub fn resolve(text: &str) -> Result<Device, EngineError> {
    let request =
        parse_device(text).map_err(|e| EngineError::BadInput(format!("device `{text}`: {e}")))?;
    let count = if tch::Cuda::is_available() {
        tch::Cuda::device_count()
    } else {
        0
    };
    match request {
        DeviceRequest::Cpu => Ok(Device::Cpu),
        // A data-parallel rank takes its node's GPU of its local rank.
        DeviceRequest::Auto => Ok(if count > 0 {
            Device::Cuda(crate::engine::dist::local_rank() % count as usize)
        } else {
            Device::Cpu
        }),
        DeviceRequest::Cuda(n) if (n as i64) < count => {
            // `cuda` on a data-parallel rank: the local rank's GPU from the one named.
            let local = crate::engine::dist::local_rank();
            Ok(Device::Cuda((n + local) % count as usize))
        }
        DeviceRequest::Cuda(n) => Err(EngineError::BadInput(format!(
            "device `{text}`: cuda:{n} was asked for but {count} CUDA device(s) are visible; use `auto` or `cpu`"
        ))),
    }
}

/// A human description: the GPU's name when it can be found, else `cuda:N`, or `cpu (N threads)`.
#[must_use]
pub fn describe(device: Device) -> String {
    match device {
        Device::Cuda(n) => {
            let name = std::process::Command::new("nvidia-smi")
                .args([
                    "--query-gpu=name",
                    "--format=csv,noheader",
                    &format!("--id={n}"),
                ])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty());
            match name {
                Some(name) => format!("cuda:{n} ({name})"),
                None => format!("cuda:{n}"),
            }
        }
        _ => format!("cpu ({} threads)", tch::get_num_threads()),
    }
}

/// Every device training could use: each CUDA device with its name and memory (from
/// `nvidia-smi`), or the CPU and its threads. Runs a process: call it off the UI thread.
#[must_use]
pub fn describe_all() -> String {
    let count = if tch::Cuda::is_available() {
        tch::Cuda::device_count()
    } else {
        0
    };
    let cpu = format!("cpu ({} threads)", tch::get_num_threads());
    if count == 0 {
        return cpu;
    }
    let smi = std::process::Command::new("nvidia-smi")
        .args([
            "--query-gpu=index,name,memory.total",
            "--format=csv,noheader",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .unwrap_or_default();
    let mut lines: Vec<String> = smi.lines().map(|l| format!("cuda:{}", l.trim())).collect();
    if lines.is_empty() {
        lines = (0..count).map(|i| format!("cuda:{i}")).collect();
    }
    lines.push(cpu);
    lines.join("; ")
}

/// libtorch's version, as the wheel it came from reports it (compiled-in for tch).
#[must_use]
pub fn libtorch_version() -> &'static str {
    "2.13.0"
}
