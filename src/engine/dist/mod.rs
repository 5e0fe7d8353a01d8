//! Data-parallel training over torch's own c10d collectives: a TCP store and a Gloo process
//! group from the libtorch the project links (`dist.cpp`, compiled by `build.rs` against
//! Debian's Gloo headers), never home-made ones.
//!
//! A process is one rank. It learns its place from the launcher's environment, torchrun's
//! (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`,
//! `TORCHELASTIC_USE_AGENT_STORE`, `TORCHELASTIC_RESTART_COUNT`) or SLURM's (`SLURM_PROCID`,
//! `SLURM_NTASKS`, `SLURM_LOCALID`), through [`RankEnv::from_env`]; with neither, or a world of
//! one, it trains alone and nothing here runs. [`install`] makes the joined group the
//! process's, as `torch.distributed`'s default group is; [`mean_grads`] and
//! [`broadcast_from_root`] are no-ops without one.
//!
//! `unsafe` code: the group is an opaque C++ object owned by [`ProcessGroup`] and freed on
//! drop; each call hands it a borrowed tensor pointer.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_void, CString};
use std::sync::OnceLock;
use std::time::Duration;

use tch::{Kind, Tensor};
use torch_sys::C_tensor;

extern "C" {
    fn wb_dist_init(
        addr: *const c_char,
        port: i32,
        rank: i32,
        world: i32,
        host_store: bool,
        prefix: *const c_char,
        timeout_ms: i64,
        nccl: bool,
        gpu: i32,
        gloo_ifnames: *const c_char,
        gloo_host: *const c_char,
        error: *mut *mut c_char,
    ) -> *mut c_void;
    fn wb_dist_allreduce_sum(g: *mut c_void, t: *mut C_tensor, error: *mut *mut c_char) -> bool;
    fn wb_dist_broadcast(
        g: *mut c_void,
        t: *mut C_tensor,
        root: i32,
        error: *mut *mut c_char,
    ) -> bool;
    fn wb_dist_barrier(g: *mut c_void, error: *mut *mut c_char) -> bool;
    fn wb_dist_free(g: *mut c_void);
}

/// Why a rank could not join or a collective failed; each names the variable, the address or
/// the operation.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    #[error("{var}={value:?}: {why}")]
    Env {
        var: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("rank {rank} of {world} could not join the group at {addr}:{port}: {message}")]
    Join {
        rank: usize,
        world: usize,
        addr: String,
        port: u16,
        message: String,
    },
    #[error("{what} failed on rank {rank} (a rank died or timed out?): {message}")]
    Collective {
        what: &'static str,
        rank: usize,
        message: String,
    },
}

/// Which launcher set the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    /// torchrun, or anything that sets torch's `env://` variables.
    Torchrun,
    Slurm,
}

/// This process's place in a data-parallel run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankEnv {
    pub rank: usize,
    pub world: usize,
    pub local_rank: usize,
    /// Ranks on this node, where the launcher says.
    pub local_world: Option<usize>,
    pub master_addr: String,
    pub master_port: u16,
    /// torchrun's agent hosts the store, so every rank connects as a client.
    pub agent_store: bool,
    /// torchrun's restart count: each attempt uses its own store keys.
    pub restart: u32,
    pub launcher: Launcher,
}

/// What the environment says about this process: a rank of a data-parallel run, or alone
/// (with a note when launcher variables were found that do not make a run).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Detected {
    pub rank: Option<RankEnv>,
    /// Why variables that name a rank were not followed (one line), if any were found.
    pub note: Option<String>,
}

impl RankEnv {
    /// The launcher's environment: this process's place, or alone.
    pub fn from_env() -> Result<Detected, DistError> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// As [`Self::from_env`], reading variables through `get`.
    ///
    /// torchrun's variables win over SLURM's (`srun torchrun ...` starts torchrun's ranks
    /// inside a SLURM step). A stray variable does not make a rank: torchrun's need a world
    /// above one and a store to meet at (`MASTER_PORT`, or the agent's store), and SLURM's
    /// count only inside a step `srun` started (`SLURM_STEP_NUM_TASKS`), not in a batch
    /// script or an `salloc` shell, which carry `SLURM_PROCID` and `SLURM_NTASKS` too.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Detected, DistError> {
        let number = |var: &'static str, value: String| -> Result<usize, DistError> {
            value.trim().parse().map_err(|_| DistError::Env {
                var,
                value,
                why: "expected a whole number",
            })
        };
        let alone = |note: String| {
            Ok(Detected {
                rank: None,
                note: Some(note),
            })
        };
        let (launcher, rank_var, world_var, local_var, r, w) = match (
            get("RANK"),
            get("WORLD_SIZE"),
        ) {
            (Some(r), Some(w)) => (Launcher::Torchrun, "RANK", "WORLD_SIZE", "LOCAL_RANK", r, w),
            _ => match (get("SLURM_PROCID"), get("SLURM_STEP_NUM_TASKS")) {
                (Some(r), Some(w)) => (
                    Launcher::Slurm,
                    "SLURM_PROCID",
                    "SLURM_STEP_NUM_TASKS",
                    "SLURM_LOCALID",
                    r,
                    w,
                ),
                (Some(_), None) => {
                    let tasks = get("SLURM_NTASKS").unwrap_or_default();
                    if number("SLURM_NTASKS", tasks.clone()).is_ok_and(|n| n > 1) {
                        return alone(format!("SLURM_NTASKS={tasks} but this process was not started by srun (no SLURM_STEP_NUM_TASKS): it trains alone; `srun workbench train ...` starts one rank per task"));
                    }
                    return Ok(Detected::default());
                }
                _ => return Ok(Detected::default()),
            },
        };
        let (rank, world) = (number(rank_var, r)?, number(world_var, w)?);
        let local = get(local_var).map(|v| number(local_var, v)).transpose()?;
        if world <= 1 {
            return Ok(Detected::default());
        }
        if rank >= world {
            return Err(DistError::Env {
                var: rank_var,
                value: rank.to_string(),
                why: "must be below the world size",
            });
        }
        let agent_store = get("TORCHELASTIC_USE_AGENT_STORE")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let master_addr = get("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".to_string());
        let master_port = match get("MASTER_PORT") {
            Some(p) => p.trim().parse().map_err(|_| DistError::Env {
                var: "MASTER_PORT",
                value: p,
                why: "expected a port number",
            })?,
            // Under SLURM without one: a port from the job id, the same on every rank.
            None => match (launcher, get("SLURM_JOB_ID")) {
                (Launcher::Slurm, Some(job)) => slurm_port(number("SLURM_JOB_ID", job)?),
                _ => {
                    return alone(format!("{rank_var}={rank} and {world_var}={world} are set but no MASTER_PORT (nor torchrun's agent store) to meet the other ranks at: it trains alone; torchrun or srun start data-parallel ranks"));
                }
            },
        };
        let restart = get("TORCHELASTIC_RESTART_COUNT")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        Ok(Detected {
            rank: Some(Self {
                rank,
                world,
                local_rank: local.unwrap_or(0),
                local_world: local_world(launcher, &get),
                master_addr,
                master_port,
                agent_store,
                restart,
                launcher,
            }),
            note: None,
        })
    }
}

/// A rendezvous port from a SLURM job id, the same on every rank: below Linux's ephemeral
/// range (32768 and up), where no outgoing connection takes it first.
pub fn slurm_port(job_id: usize) -> u16 {
    (15_000 + job_id % 15_000) as u16
}

/// The number of ranks on this node, where the launcher says: torchrun's
/// `LOCAL_WORLD_SIZE`, or SLURM's tasks on this node (`SLURM_STEP_TASKS_PER_NODE`, `2(x3)`
/// for three nodes of two, read for the node this rank runs on).
fn local_world(launcher: Launcher, get: &impl Fn(&str) -> Option<String>) -> Option<usize> {
    match launcher {
        Launcher::Torchrun => get("LOCAL_WORLD_SIZE")?.trim().parse().ok(),
        Launcher::Slurm => {
            let spec = get("SLURM_STEP_TASKS_PER_NODE")?;
            let node: usize = get("SLURM_NODEID")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let mut seen = 0;
            for part in spec.split(',') {
                let (count, times) = match part.split_once("(x") {
                    Some((c, t)) => (c, t.trim_end_matches(')').parse().ok()?),
                    None => (part, 1usize),
                };
                seen += times;
                if node < seen {
                    return count.trim().parse().ok();
                }
            }
            None
        }
    }
}

/// Which c10d backend a group uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// CPU tensors (CUDA ones through host copies).
    Gloo,
    /// CUDA tensors, GPU to GPU; CPU tensors (scalars, the start message) go through this
    /// rank's GPU.
    Nccl,
}

impl Backend {
    /// The backend for ranks that train on `device`: NCCL for CUDA (where this build has it),
    /// Gloo for the CPU, as torch's `cpu:gloo,cuda:nccl`. `WORKBENCH_DIST_BACKEND` (`gloo` or
    /// `nccl`) chooses instead; NCCL for a CPU run is refused.
    pub fn for_device(device: tch::Device) -> Result<Self, DistError> {
        let cuda = device.is_cuda();
        match std::env::var("WORKBENCH_DIST_BACKEND").ok().as_deref() {
            None | Some("") => Ok(if cfg!(workbench_nccl) && cuda {
                Self::Nccl
            } else {
                Self::Gloo
            }),
            Some("gloo") => Ok(Self::Gloo),
            // Said by every rank before any joins, rather than by one while the others wait.
            Some("nccl") if !cuda => Err(DistError::Env {
                var: "WORKBENCH_DIST_BACKEND",
                value: "nccl".into(),
                why: "NCCL carries CUDA tensors and this run trains on the CPU (use gloo, or a CUDA device)",
            }),
            Some("nccl") => Ok(Self::Nccl),
            Some(other) => Err(DistError::Env {
                var: "WORKBENCH_DIST_BACKEND",
                value: other.to_string(),
                why: "expected gloo or nccl",
            }),
        }
    }
}

/// Refuses, before any rank joins, NCCL ranks that would share a GPU (NCCL needs one GPU per
/// rank and fails late, with an abort, when two share one): more ranks on this node than GPUs
/// visible. SLURM's `--gpus-per-task` gives each task its own (`SLURM_GPUS_PER_TASK`).
pub fn check_gpus_per_rank(env: &RankEnv, backend: Backend, gpus: usize) -> Result<(), DistError> {
    if backend != Backend::Nccl || std::env::var_os("SLURM_GPUS_PER_TASK").is_some() {
        return Ok(());
    }
    let ranks_here = env.local_world.unwrap_or(env.local_rank + 1);
    if ranks_here > gpus {
        return Err(DistError::Env {
            var: if env.launcher == Launcher::Torchrun {
                "LOCAL_WORLD_SIZE"
            } else {
                "SLURM_STEP_TASKS_PER_NODE"
            },
            value: ranks_here.to_string(),
            why: if gpus == 1 {
                "more ranks on this node than its 1 GPU: NCCL needs a GPU per rank (start one rank per GPU, or train on the CPU with --device cpu)"
            } else {
                "more ranks on this node than GPUs: NCCL needs a GPU per rank (start one rank per GPU, or train on the CPU with --device cpu)"
            },
        });
    }
    Ok(())
}

/// A joined c10d process group.
#[derive(Debug)]
pub struct ProcessGroup {
    ptr: *mut c_void,
    rank: usize,
    world: usize,
    local_rank: usize,
    backend: Backend,
    /// The GPU this rank trains on (NCCL's tensors travel through it).
    gpu: Option<usize>,
}

// SAFETY: c10d process groups are built to be driven from any thread (torch's DDP issues
// collectives from autograd threads); this wrapper only hands the pointer to them.
unsafe impl Send for ProcessGroup {}
// SAFETY: as above; every operation goes through the C++ object's own synchronisation.
unsafe impl Sync for ProcessGroup {}

/// About 25 MB of float32 per all-reduce, as torch's DDP buckets.
const BUCKET_ELEMENTS: i64 = 25 * 1024 * 1024 / 4;

fn take_error(error: *mut c_char) -> String {
    let message =
        crate::engine::ops::take_message(error).unwrap_or_else(|| "unknown c10d error".to_string());
    // Gloo starts its messages with the source location: `[.../pair.cc:553] Connection ...`,
    // and c10d ends a lost peer's with boilerplate advice; the cause stays.
    let message = match message.strip_prefix('[').and_then(|m| m.split_once("] ")) {
        Some((_, rest)) => rest.to_string(),
        None => message,
    };
    match message.split_once(". This is typically caused") {
        Some((cause, _)) => cause.to_string(),
        None => message,
    }
}

impl ProcessGroup {
    /// Joins the group `env` describes over Gloo; every rank must call this, and it returns
    /// when all have joined, or with an error after `timeout`.
    pub fn join(env: &RankEnv, timeout: Duration) -> Result<Self, DistError> {
        Self::join_with(env, timeout, Backend::Gloo, None)
    }

    /// [`Self::join`] over a chosen backend; `gpu`: the CUDA device this rank trains on
    /// (made the process's current device, and NCCL's).
    pub fn join_with(
        env: &RankEnv,
        timeout: Duration,
        backend: Backend,
        gpu: Option<usize>,
    ) -> Result<Self, DistError> {
        let fail = |message: String| DistError::Join {
            rank: env.rank,
            world: env.world,
            addr: env.master_addr.clone(),
            port: env.master_port,
            message,
        };
        let text = |s: String| CString::new(s).map_err(|_| fail("a NUL byte in a name".into()));
        let addr = text(env.master_addr.clone())?;
        let prefix = text(format!("workbench/{}", env.restart))?;
        // Gloo listens on this node's own interface: GLOO_SOCKET_IFNAME's, else the address
        // this node reaches the store from (MASTER_ADDR is a local address on one node only).
        let ifnames = text(std::env::var("GLOO_SOCKET_IFNAME").unwrap_or_default())?;
        let own = text(
            local_address_towards(&env.master_addr, env.master_port)
                .map(|ip| ip.to_string())
                .unwrap_or_default(),
        )?;
        let host_store = env.rank == 0 && !env.agent_store;
        let mut error = std::ptr::null_mut();
        // SAFETY: the strings outlive the call; the shim copies what it keeps.
        let ptr = unsafe {
            wb_dist_init(
                addr.as_ptr(),
                i32::from(env.master_port),
                env.rank as i32,
                env.world as i32,
                host_store,
                prefix.as_ptr(),
                timeout.as_millis().min(i64::MAX as u128) as i64,
                backend == Backend::Nccl,
                gpu.map_or(-1, |g| g as i32),
                ifnames.as_ptr(),
                own.as_ptr(),
                &mut error,
            )
        };
        if ptr.is_null() {
            return Err(fail(take_error(error)));
        }
        Ok(Self {
            ptr,
            rank: env.rank,
            world: env.world,
            local_rank: env.local_rank,
            backend,
            gpu,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Runs `op` on `t`, or under NCCL on a copy of a CPU tensor on this rank's GPU, copied
    /// back after.
    fn on_device(
        &self,
        t: &Tensor,
        op: impl FnOnce(&Tensor) -> Result<(), DistError>,
    ) -> Result<(), DistError> {
        if self.backend == Backend::Gloo || t.device().is_cuda() {
            return op(t);
        }
        let gpu = self.gpu.unwrap_or(0);
        let d = t.to_device(tch::Device::Cuda(gpu));
        op(&d)?;
        tch::no_grad(|| t.shallow_clone().copy_(&d));
        Ok(())
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The rank on its node: which GPU it trains on.
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }

    pub fn world(&self) -> usize {
        self.world
    }

    fn call(
        &self,
        what: &'static str,
        f: impl FnOnce(*mut *mut c_char) -> bool,
    ) -> Result<(), DistError> {
        let mut error = std::ptr::null_mut();
        if f(&mut error) {
            Ok(())
        } else {
            Err(DistError::Collective {
                what,
                rank: self.rank,
                message: take_error(error),
            })
        }
    }

    /// Sums `t` (contiguous, CPU) over the ranks, in place.
    pub fn all_reduce_sum(&self, t: &Tensor) -> Result<(), DistError> {
        self.on_device(t, |t| {
            let mut t = t.shallow_clone();
            // SAFETY: `t` is a live tensor for the duration of the call; the group is live.
            self.call("all-reduce", |e| unsafe {
                wb_dist_allreduce_sum(self.ptr, t.as_mut_ptr(), e)
            })
        })
    }

    /// Overwrites `t` (contiguous, CPU) with rank `root`'s, in place.
    pub fn broadcast(&self, t: &Tensor, root: usize) -> Result<(), DistError> {
        self.on_device(t, |t| {
            let mut t = t.shallow_clone();
            // SAFETY: as in `all_reduce_sum`.
            self.call("broadcast", |e| unsafe {
                wb_dist_broadcast(self.ptr, t.as_mut_ptr(), root as i32, e)
            })
        })
    }

    /// Returns when every rank has reached it.
    pub fn barrier(&self) -> Result<(), DistError> {
        // SAFETY: the group is live.
        self.call("barrier", |e| unsafe { wb_dist_barrier(self.ptr, e) })
    }

    /// Replaces each tensor by its mean over the ranks, in flat buckets per kind.
    pub fn mean(&self, tensors: &[Tensor]) -> Result<(), DistError> {
        let world = self.world as f64;
        self.bucketed(tensors, |flat| {
            self.all_reduce_sum(flat)?;
            let _ = flat.shallow_clone().g_div_scalar_(world);
            Ok(())
        })
    }

    /// Overwrites each tensor with rank 0's, in flat buckets per kind.
    pub fn broadcast_all(&self, tensors: &[Tensor]) -> Result<(), DistError> {
        self.bucketed(tensors, |flat| self.broadcast(flat, 0))
    }

    /// Runs `op` on flat copies of `tensors` (grouped by kind, about 25 MB each) and copies
    /// the results back, without recording a graph.
    fn bucketed(
        &self,
        tensors: &[Tensor],
        op: impl Fn(&Tensor) -> Result<(), DistError>,
    ) -> Result<(), DistError> {
        tch::no_grad(|| {
            let mut kinds: Vec<Kind> = Vec::new();
            for t in tensors {
                if !kinds.contains(&t.kind()) {
                    kinds.push(t.kind());
                }
            }
            for kind in kinds {
                let group: Vec<&Tensor> = tensors.iter().filter(|t| t.kind() == kind).collect();
                let mut start = 0;
                while start < group.len() {
                    let mut end = start;
                    let mut size = 0;
                    while end < group.len() && (end == start || size < BUCKET_ELEMENTS) {
                        size += group[end].numel() as i64;
                        end += 1;
                    }
                    let bucket = &group[start..end];
                    let flat = Tensor::cat(
                        &bucket.iter().map(|t| t.reshape([-1])).collect::<Vec<_>>(),
                        0,
                    );
                    op(&flat)?;
                    let mut offset = 0;
                    for t in bucket {
                        let n = t.numel() as i64;
                        t.shallow_clone()
                            .copy_(&flat.narrow(0, offset, n).view(t.size().as_slice()));
                        offset += n;
                    }
                    start = end;
                }
            }
            Ok(())
        })
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `wb_dist_init` and is freed once.
        unsafe { wb_dist_free(self.ptr) };
    }
}

static GROUP: OnceLock<ProcessGroup> = OnceLock::new();

/// Nanoseconds spent in the training steps' collectives (gradient means, gathered codebook
/// rows, scalar means, rank 0's clock): what data parallelism costs a step.
static STEP_COLLECTIVES_NANOS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn timed<T>(f: impl FnOnce() -> T) -> T {
    let _part = crate::engine::timing::scope(crate::engine::timing::COLLECTIVES);
    let t0 = std::time::Instant::now();
    let out = f();
    let nanos = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
    STEP_COLLECTIVES_NANOS.fetch_add(nanos, std::sync::atomic::Ordering::Relaxed);
    out
}

/// Seconds this process has spent in the training steps' collectives so far.
pub fn step_collective_secs() -> f64 {
    STEP_COLLECTIVES_NANOS.load(std::sync::atomic::Ordering::Relaxed) as f64 * 1e-9
}

/// How long a rank waits for the others to join or to reach a collective:
/// `WORKBENCH_DIST_TIMEOUT_SECS`, 300 s by default. A rank that dies is seen at once (its
/// connections close); the timeout only bounds a rank that hangs.
pub fn timeout_from_env() -> Duration {
    std::env::var("WORKBENCH_DIST_TIMEOUT_SECS")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .map_or(Duration::from_secs(300), Duration::from_secs_f64)
}

/// The address of this node's interface that reaches `host:port` (no packet is sent: a UDP
/// socket's route), or `None` when it cannot be found.
fn local_address_towards(host: &str, port: u16) -> Option<std::net::IpAddr> {
    use std::net::{ToSocketAddrs, UdpSocket};
    let target = (host, port).to_socket_addrs().ok()?.next()?;
    let any = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(any).ok()?;
    socket.connect(target).ok()?;
    Some(socket.local_addr().ok()?.ip())
}

/// Joins the data-parallel group `env` describes, for ranks training on `device`, and
/// installs it. The backend follows the device ([`Backend::for_device`]); NCCL ranks that
/// would share a GPU are refused before joining.
pub fn join(env: &RankEnv, device: tch::Device) -> Result<(), DistError> {
    let backend = Backend::for_device(device)?;
    let gpu = match device {
        tch::Device::Cuda(i) => Some(i),
        _ => None,
    };
    let gpus = if tch::Cuda::is_available() {
        tch::Cuda::device_count().max(0) as usize
    } else {
        0
    };
    check_gpus_per_rank(env, backend, gpus)?;
    let group = ProcessGroup::join_with(env, timeout_from_env(), backend, gpu)?;
    // One group per process: a second join keeps the first.
    let _ = install(group);
    let _ = RANK_ENV.set(env.clone());
    Ok(())
}

/// The launcher's description of this rank, before and after it joins.
static RANK_ENV: OnceLock<RankEnv> = OnceLock::new();

/// Notes which rank this process is before it joins (the device it trains on follows its
/// local rank).
pub fn set_rank_env(env: &RankEnv) {
    let _ = RANK_ENV.set(env.clone());
}

/// Waits until every rank has come here (a no-op alone): the ranks of a run that ended well
/// leave together, so a launcher that ends the others when one exits takes nothing unfinished.
pub fn all_here() -> Result<(), DistError> {
    let Some(g) = group() else {
        return Ok(());
    };
    g.all_reduce_sum(&Tensor::from_slice(&[1.0f64]))
}

/// Makes `group` this process's for the rest of its life (a process is one rank); `Err` gives
/// it back when one is already installed.
pub fn install(group: ProcessGroup) -> Result<(), ProcessGroup> {
    GROUP.set(group)
}

/// This process's group, when it is one rank of several.
pub fn group() -> Option<&'static ProcessGroup> {
    GROUP.get()
}

/// This process's rank and the world size: `(0, 1)` alone.
pub fn rank_and_world() -> (usize, usize) {
    group().map_or((0, 1), |g| (g.rank(), g.world()))
}

/// This process's rank on its node (0 alone), from its group or, before it joins, from the
/// launcher's variables.
pub fn local_rank() -> usize {
    group().map_or_else(
        || RANK_ENV.get().map_or(0, |e| e.local_rank),
        ProcessGroup::local_rank,
    )
}

/// Rank 0's `value` on every rank (as is, alone): a decision only rank 0 may take, such as
/// the wall-clock end of a timed phase.
pub fn root_value(value: f64) -> Result<f64, DistError> {
    let Some(g) = group() else {
        return Ok(value);
    };
    let t = Tensor::from_slice(&[value]);
    timed(|| g.broadcast(&t, 0))?;
    Ok(t.double_value(&[0]))
}

/// The trainable variables of `vs` sorted by name: the same order in every process (tch's
/// `trainable_variables` follows a hash map's, which differs between processes, and the
/// collectives pair tensors by position).
pub fn trainable_in_order(vs: &tch::nn::VarStore) -> Vec<Tensor> {
    let mut named: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named.into_iter().map(|(_, t)| t).collect()
}

/// Replaces the gradients of `params` by their mean over the ranks (a no-op alone). Call it
/// after each backward and before clipping and the step; parameters without a gradient are
/// left out (every rank runs the same graph, so the same ones).
pub fn mean_grads<'a>(params: impl IntoIterator<Item = &'a Tensor>) -> Result<(), DistError> {
    let Some(g) = group() else {
        return Ok(());
    };
    let grads: Vec<Tensor> = params
        .into_iter()
        .map(Tensor::grad)
        .filter(Tensor::defined)
        .collect();
    timed(|| g.mean(&grads))
}

/// Overwrites `tensors` with rank 0's (a no-op alone): parameters and buffers at the start and
/// after a resume, so every rank trains the same model.
pub fn broadcast_from_root(tensors: &[Tensor]) -> Result<(), DistError> {
    match group() {
        Some(g) => g.broadcast_all(tensors),
        None => Ok(()),
    }
}

/// The mean of each value over the ranks (as is, alone): the logged scalars.
pub fn mean_values(values: &mut [f64]) -> Result<(), DistError> {
    let Some(g) = group() else {
        return Ok(());
    };
    if values.is_empty() {
        return Ok(());
    }
    let t = Tensor::from_slice(values);
    timed(|| g.mean(std::slice::from_ref(&t)))?;
    let out = Vec::<f64>::try_from(&t).map_err(|e| DistError::Collective {
        what: "reading the mean",
        rank: g.rank(),
        message: e.to_string(),
    })?;
    values.copy_from_slice(&out);
    Ok(())
}

/// Where this rank's `b` items of global batch `batch` start in an epoch's order: a global
/// batch is `world * b` consecutive items and rank `r` takes the `r`-th run of `b`, so the
/// ranks together train on exactly the batch one process with `world * b` would (the epoch's
/// tail that fills no global batch is dropped by [`steps_per_epoch`]).
pub fn batch_start(batch: usize, b: usize) -> usize {
    let (rank, world) = rank_and_world();
    (batch * world + rank) * b
}

/// Global batches of `b` items per rank in an epoch of `n` items (at least 1).
pub fn steps_per_epoch(n: usize, b: usize) -> u64 {
    let (_, world) = rank_and_world();
    (n / (b.max(1) * world)).max(1) as u64
}

/// This rank's part of a tensor drawn for the whole global batch: rows `rank * b..(rank+1) *
/// b` of `global` (`world * b` rows). Alone, `global` itself.
fn rank_rows(global: Tensor) -> Tensor {
    let (rank, world) = rank_and_world();
    if world == 1 {
        return global;
    }
    let b = global.size()[0] / world as i64;
    global.narrow(0, rank as i64 * b, b)
}

/// Normal noise for this rank's `shape[0]` rows: the global batch's draw, then this rank's
/// rows, so every rank consumes the generator as one process with the global batch would and
/// gets the rows that process would give its items.
pub fn randn_rows(shape: &[i64], opts: (Kind, tch::Device)) -> Tensor {
    rank_rows(Tensor::randn(global_shape(shape), opts))
}

/// Uniform noise in [0, 1) for this rank's rows, as [`randn_rows`].
pub fn rand_rows(shape: &[i64], opts: (Kind, tch::Device)) -> Tensor {
    rank_rows(Tensor::rand(global_shape(shape), opts))
}

/// Every rank's rows of `local` (the same number on each), in rank order: exactly the rows
/// one process with the global batch would hold. Alone, `local` itself. Built on the
/// all-reduce (each rank's rows at its offset, zeros elsewhere), which adds only exact zeros.
///
/// # Panics
/// When a rank died or timed out: it is called inside a model's forward, where the step's
/// panic guard turns it into the step's error with this message.
pub fn gather_rows(local: &Tensor) -> Tensor {
    let Some(g) = group() else {
        return local.shallow_clone();
    };
    let mut shape = local.size();
    let b = shape.first().copied().unwrap_or(0);
    if let Some(first) = shape.first_mut() {
        *first *= g.world() as i64;
    }
    let all = tch::no_grad(|| {
        let all = Tensor::zeros(shape.as_slice(), (local.kind(), local.device()));
        all.narrow(0, g.rank() as i64 * b, b).copy_(&local.detach());
        all
    });
    if let Err(e) = timed(|| g.all_reduce_sum(&all)) {
        panic!("{e}");
    }
    all
}

fn global_shape(shape: &[i64]) -> Vec<i64> {
    let (_, world) = rank_and_world();
    let mut s = shape.to_vec();
    if let Some(first) = s.first_mut() {
        *first *= world as i64;
    }
    s
}

/// Rank 0's text on every rank (up to 16 KiB); alone, `text` itself. Used once at
/// the start: rank 0 tells the others its run directory.
pub fn broadcast_text(text: &str) -> Result<String, DistError> {
    let Some(g) = group() else {
        return Ok(text.to_string());
    };
    let mut buf = vec![0u8; HANDSHAKE_BYTES];
    let bytes = text.as_bytes();
    let n = bytes.len().min(HANDSHAKE_BYTES - 4);
    buf[..4].copy_from_slice(&(n as u32).to_le_bytes());
    buf[4..4 + n].copy_from_slice(&bytes[..n]);
    let t = Tensor::from_slice(&buf);
    g.broadcast(&t, 0)?;
    let out = Vec::<u8>::try_from(&t).map_err(|e| DistError::Collective {
        what: "reading a broadcast",
        rank: g.rank(),
        message: e.to_string(),
    })?;
    let mut len = [0u8; 4];
    len.copy_from_slice(&out[..4]);
    let n = (u32::from_le_bytes(len) as usize).min(HANDSHAKE_BYTES - 4);
    Ok(String::from_utf8_lossy(&out[4..4 + n]).into_owned())
}

const HANDSHAKE_BYTES: usize = 16 * 1024;

/// A fingerprint of `tensors`' exact bits: FNV-1a over their bytes, cut to 52 bits so it
/// travels exactly as an f64.
pub fn fingerprint(tensors: &[Tensor]) -> f64 {
    let mut h = crate::core::rng::FNV_OFFSET;
    tch::no_grad(|| {
        for t in tensors {
            let flat = t
                .detach()
                .to_device(tch::Device::Cpu)
                .contiguous()
                .reshape([-1]);
            let numel = flat.numel();
            let mut raw = vec![0u8; numel * flat.kind().elt_size_in_bytes()];
            if flat.f_copy_data_u8(&mut raw, numel).is_err() {
                continue;
            }
            h = crate::core::rng::fnv1a(h, &raw);
        }
    });
    (h >> 12) as f64
}

/// The [`fingerprint`] of `tensors` when every rank holds exactly rank 0's, `None` when one
/// does not: each compares its own with rank 0's and the disagreements are summed over the
/// ranks. Alone, the fingerprint.
pub fn ranks_agree(tensors: &[Tensor]) -> Result<Option<f64>, DistError> {
    let own = fingerprint(tensors);
    let Some(g) = group() else {
        return Ok(Some(own));
    };
    let root = Tensor::from_slice(&[own]);
    g.broadcast(&root, 0)?;
    let differs = f64::from(u8::from(root.double_value(&[0]) != own));
    let count = Tensor::from_slice(&[differs]);
    g.all_reduce_sum(&count)?;
    Ok((count.double_value(&[0]) == 0.0).then_some(own))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<Detected, DistError> {
        RankEnv::from_vars(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_string())
        })
    }

    fn rank(vars: &[(&str, &str)]) -> RankEnv {
        env(vars).expect("env").rank.expect("a rank")
    }

    #[test]
    fn reads_torchrun_and_slurm_and_stays_alone_without_them() {
        assert_eq!(env(&[]).expect("none"), Detected::default());
        assert_eq!(
            env(&[("RANK", "0"), ("WORLD_SIZE", "1")]).expect("one"),
            Detected::default()
        );
        let t = rank(&[
            ("RANK", "1"),
            ("WORLD_SIZE", "4"),
            ("LOCAL_RANK", "1"),
            ("LOCAL_WORLD_SIZE", "2"),
            ("MASTER_ADDR", "node7"),
            ("MASTER_PORT", "29500"),
            ("TORCHELASTIC_USE_AGENT_STORE", "True"),
            ("TORCHELASTIC_RESTART_COUNT", "2"),
            ("SLURM_PROCID", "3"),
            ("SLURM_STEP_NUM_TASKS", "8"),
        ]);
        assert_eq!(
            (t.launcher, t.rank, t.world, t.local_rank, t.master_port),
            (Launcher::Torchrun, 1, 4, 1, 29500)
        );
        assert_eq!(t.local_world, Some(2));
        assert!(t.agent_store);
        assert_eq!((t.restart, t.master_addr.as_str()), (2, "node7"));
        let s = rank(&[
            ("SLURM_PROCID", "1"),
            ("SLURM_NTASKS", "4"),
            ("SLURM_STEP_NUM_TASKS", "4"),
            ("SLURM_LOCALID", "0"),
            ("SLURM_NODEID", "1"),
            ("SLURM_STEP_TASKS_PER_NODE", "3,1"),
            ("SLURM_JOB_ID", "1234"),
        ]);
        assert_eq!(
            (s.launcher, s.rank, s.world, s.master_port),
            (Launcher::Slurm, 1, 4, 16234)
        );
        assert_eq!(s.local_world, Some(1));
        assert!(!s.agent_store);
        assert_eq!(s.master_addr, "127.0.0.1");
        let s = rank(&[
            ("SLURM_PROCID", "5"),
            ("SLURM_STEP_NUM_TASKS", "6"),
            ("SLURM_NODEID", "2"),
            ("SLURM_STEP_TASKS_PER_NODE", "2(x3)"),
            ("SLURM_JOB_ID", "7"),
        ]);
        assert_eq!(s.local_world, Some(2));
    }

    /// Variables that name a rank but no run (a batch script's, a shell that inherited a
    /// torchrun rank's) leave the process alone, with one line saying why.
    #[test]
    fn stray_variables_train_alone_with_a_note() {
        let d = env(&[("RANK", "1"), ("WORLD_SIZE", "2")]).expect("alone");
        assert_eq!(d.rank, None);
        let note = d.note.expect("a note");
        assert!(
            note.contains("no MASTER_PORT") && note.contains("alone"),
            "{note}"
        );
        assert!(!note.contains('\n'));
        // A batch script or an salloc shell: SLURM_PROCID without an srun step.
        let d = env(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_JOB_ID", "3"),
        ])
        .expect("alone");
        assert_eq!(d.rank, None);
        assert!(d.note.expect("a note").contains("not started by srun"));
        // One task: nothing to say.
        assert_eq!(
            env(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "1")]).expect("alone"),
            Detected::default()
        );
    }

    #[test]
    fn bad_variables_name_themselves() {
        let e = env(&[("RANK", "x"), ("WORLD_SIZE", "2")]).unwrap_err();
        assert!(e.to_string().starts_with("RANK=\"x\""), "{e}");
        let e = env(&[("RANK", "2"), ("WORLD_SIZE", "2"), ("MASTER_PORT", "1")]).unwrap_err();
        assert!(e.to_string().contains("below the world size"), "{e}");
        let e = env(&[("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_PORT", "x")]).unwrap_err();
        assert!(e.to_string().starts_with("MASTER_PORT"), "{e}");
    }

    /// NCCL ranks that would share a GPU are refused before any joins; Gloo and one rank per
    /// GPU pass.
    #[test]
    fn nccl_needs_a_gpu_per_rank() {
        let r = rank(&[
            ("RANK", "1"),
            ("WORLD_SIZE", "2"),
            ("LOCAL_RANK", "1"),
            ("LOCAL_WORLD_SIZE", "2"),
            ("MASTER_PORT", "1"),
        ]);
        let e = check_gpus_per_rank(&r, Backend::Nccl, 1)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("LOCAL_WORLD_SIZE=\"2\"") && e.contains("1 GPU"),
            "{e}"
        );
        assert!(check_gpus_per_rank(&r, Backend::Nccl, 2).is_ok());
        assert!(check_gpus_per_rank(&r, Backend::Gloo, 0).is_ok());
    }

    #[test]
    fn the_local_address_towards_a_host_is_this_machines() {
        let ip = local_address_towards("127.0.0.1", 29500).expect("loopback route");
        assert!(ip.is_loopback(), "{ip}");
    }
}
