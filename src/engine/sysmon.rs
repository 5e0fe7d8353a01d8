//! System samples on the step axis: the process's CPU use and memory, the machine's memory,
//! and for this rank's CUDA device its use, memory, power and temperature through NVML
//! (`libnvidia-ml`, loaded at run time: a machine without it samples the rest).
//!
//! A thread of its own ("workbench-sysmon") samples at the preset's interval
//! (`logging.system_every_ms`) into a small bounded channel; the session takes what arrived
//! at the end of each step, so each sample is logged at the step in force when it was taken,
//! beside the step's other scalars.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TrySendError};

/// Process CPU, in percent of one core (200 is two cores busy).
pub const CPU: &str = "sys_cpu_percent";
/// Process resident memory.
pub const RSS: &str = "sys_rss_mib";
/// The machine's memory in use (total less available).
pub const MEM_USED: &str = "sys_mem_used_mib";
pub const GPU_UTIL: &str = "sys_gpu_util_percent";
pub const GPU_MEM: &str = "sys_gpu_mem_used_mib";
pub const GPU_POWER: &str = "sys_gpu_power_w";
pub const GPU_TEMP: &str = "sys_gpu_temp_c";

/// One sample: each quantity's value.
pub type Sample = Vec<(&'static str, f64)>;

/// The sampling thread; dropping it stops the thread.
#[derive(Debug)]
pub struct Sampler {
    samples: Receiver<Sample>,
    stop: Arc<AtomicBool>,
    names: Vec<&'static str>,
}

impl Sampler {
    /// Starts sampling every `every`; `cuda` is this rank's CUDA device index, if it trains on
    /// one. Says which quantities it will report (`names`), the GPU's only when NVML answers
    /// for that device.
    pub fn start(every: Duration, cuda: Option<usize>) -> std::io::Result<Self> {
        let gpu = cuda.and_then(Gpu::open);
        let mut names = vec![CPU, RSS, MEM_USED];
        if gpu.is_some() {
            names.extend([GPU_UTIL, GPU_MEM, GPU_POWER, GPU_TEMP]);
        }
        let (tx, samples) = crossbeam_channel::bounded(64);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("workbench-sysmon".into())
            .spawn(move || {
                let mut cpu = CpuMeter::new();
                let mut next = Instant::now() + every;
                while !stopped.load(Ordering::Relaxed) {
                    // Short sleeps, so a finished run does not wait a whole interval.
                    let now = Instant::now();
                    if now < next {
                        std::thread::sleep((next - now).min(Duration::from_millis(50)));
                        continue;
                    }
                    next += every;
                    let mut s: Sample = Vec::with_capacity(7);
                    if let Some(c) = cpu.percent() {
                        s.push((CPU, c));
                    }
                    if let Some(r) = rss_mib() {
                        s.push((RSS, r));
                    }
                    if let Some(m) = mem_used_mib() {
                        s.push((MEM_USED, m));
                    }
                    if let Some(g) = &gpu {
                        s.extend(g.sample());
                    }
                    match tx.try_send(s) {
                        // A session that does not step (paused) keeps only what fits.
                        Ok(()) | Err(TrySendError::Full(_)) => {}
                        Err(TrySendError::Disconnected(_)) => return,
                    }
                }
            })?;
        Ok(Self {
            samples,
            stop,
            names,
        })
    }

    /// The quantities this sampler reports.
    #[must_use]
    pub fn names(&self) -> &[&'static str] {
        &self.names
    }

    /// The samples taken since the last call.
    pub fn take(&self) -> Vec<Sample> {
        self.samples.try_iter().collect()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The process's CPU time between two samples, over the wall time between them.
#[derive(Debug)]
struct CpuMeter {
    last: Option<(Instant, f64)>,
}

impl CpuMeter {
    fn new() -> Self {
        Self {
            last: process_cpu_secs().map(|c| (Instant::now(), c)),
        }
    }

    fn percent(&mut self) -> Option<f64> {
        let now = (Instant::now(), process_cpu_secs()?);
        let (t0, c0) = self.last.replace(now)?;
        let wall = (now.0 - t0).as_secs_f64();
        (wall > 0.0).then(|| 100.0 * (now.1 - c0) / wall)
    }
}

/// User and system CPU seconds of this process (`/proc/self/stat`, Linux).
fn process_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name is in parentheses and may hold spaces: fields count from after it.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / clock_ticks_per_sec())
}

/// `sysconf(_SC_CLK_TCK)`: 100 on every Linux this runs on (it is fixed by the kernel's ABI
/// for `/proc`, `USER_HZ`).
fn clock_ticks_per_sec() -> f64 {
    100.0
}

/// A `kB` line of a `/proc` file, in MiB.
fn proc_kib(path: &str, key: &str) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kib: f64 = line[key.len()..].split_whitespace().next()?.parse().ok()?;
    Some(kib / 1024.0)
}

fn rss_mib() -> Option<f64> {
    proc_kib("/proc/self/status", "VmRSS:")
}

fn mem_used_mib() -> Option<f64> {
    Some(proc_kib("/proc/meminfo", "MemTotal:")? - proc_kib("/proc/meminfo", "MemAvailable:")?)
}

/// This rank's GPU through NVML.
struct Gpu {
    nvml: nvml_wrapper::Nvml,
    /// NVML's index of the device (NVML counts every GPU of the machine; CUDA only the
    /// visible ones, in `CUDA_VISIBLE_DEVICES`' order).
    index: u32,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gpu({})", self.index)
    }
}

impl Gpu {
    fn open(cuda: usize) -> Option<Self> {
        let nvml = nvml_wrapper::Nvml::init().ok()?;
        let visible = std::env::var("CUDA_VISIBLE_DEVICES").ok();
        let index = match visible.as_deref().map(|v| v.split(',').nth(cuda)) {
            // An index, or a UUID (`GPU-...`) NVML finds.
            Some(Some(entry)) => match entry.trim().parse::<u32>() {
                Ok(i) => i,
                Err(_) => nvml.device_by_uuid(entry.trim()).ok()?.index().ok()?,
            },
            Some(None) => return None,
            None => u32::try_from(cuda).ok()?,
        };
        nvml.device_by_index(index).ok()?;
        Some(Self { nvml, index })
    }

    fn sample(&self) -> Sample {
        let Ok(d) = self.nvml.device_by_index(self.index) else {
            return Vec::new();
        };
        let mut s = Vec::with_capacity(4);
        if let Ok(u) = d.utilization_rates() {
            s.push((GPU_UTIL, f64::from(u.gpu)));
        }
        if let Ok(m) = d.memory_info() {
            s.push((GPU_MEM, m.used as f64 / (1024.0 * 1024.0)));
        }
        if let Ok(p) = d.power_usage() {
            s.push((GPU_POWER, f64::from(p) / 1000.0));
        }
        if let Ok(t) = d.temperature(nvml_wrapper::enum_wrappers::device::TemperatureSensor::Gpu) {
            s.push((GPU_TEMP, f64::from(t)));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_process_is_sampled_with_its_cpu_and_memory() {
        let s = Sampler::start(Duration::from_millis(100), None).expect("start");
        assert_eq!(s.names(), [CPU, RSS, MEM_USED]);
        // Keep one core busy for a while.
        let t0 = Instant::now();
        let mut x = 0u64;
        while t0.elapsed() < Duration::from_millis(450) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let samples = s.take();
        assert!(samples.len() >= 3, "{samples:?}");
        let last = samples.last().expect("a sample");
        let get = |k| last.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        // One core busy (other tests running beside it may take some of it): well above idle.
        let cpu = get(CPU).expect("cpu");
        assert!(cpu > 20.0, "{cpu}");
        let rss = get(RSS).expect("rss");
        assert!(rss > 1.0 && rss < 1e6, "{rss}");
        assert!(get(MEM_USED).expect("mem") >= rss);
    }
}
