//! Operators that tch's generated bindings cannot express, called through a small C++ shim
//! (`ops.cpp`, compiled by `build.rs` against the same libtorch), and the host allocator's
//! settings. With `dist`, the crate's only `unsafe` code: each tensor function hands a
//! borrowed tensor pointer to ATen and takes ownership of the tensor it returns.

#![allow(unsafe_code)]

use std::ffi::{c_char, CStr};

use tch::{TchError, Tensor};
use torch_sys::C_tensor;

extern "C" {
    fn wb_leaky_relu(
        x: *const C_tensor,
        negative_slope: f64,
        error: *mut *mut c_char,
    ) -> *mut C_tensor;
    fn wb_clear_grad(x: *mut C_tensor, error: *mut *mut c_char) -> bool;
    fn wb_keep_large_allocations(threshold: std::ffi::c_int) -> bool;
    fn wb_free_error(error: *mut c_char);
}

/// Takes the message a failed call of either shim (`ops`, `dist`) left in `error`, freeing
/// it (`src/engine/shim_error.hpp`); `None` when there is none.
pub(crate) fn take_message(error: *mut c_char) -> Option<String> {
    if error.is_null() {
        return None;
    }
    // SAFETY: a shim sets `error` to a NUL-terminated malloc'd string on failure, and it is
    // freed exactly once, here.
    let message = unsafe { CStr::from_ptr(error) }
        .to_string_lossy()
        .into_owned();
    unsafe { wb_free_error(error) };
    Some(message)
}

/// The message of a failed shim call.
fn error_message(error: *mut c_char) -> TchError {
    TchError::Torch(
        take_message(error).unwrap_or_else(|| "ATen call failed without a message".to_string()),
    )
}

/// Takes the result of a shim call: the tensor, or the message ATen threw.
fn take(result: *mut C_tensor, error: *mut c_char) -> Result<Tensor, TchError> {
    if result.is_null() {
        return Err(error_message(error));
    }
    // SAFETY: a non-null result is a fresh `new at::Tensor` that nobody else owns; tch frees
    // it with `delete` when the Tensor drops.
    Ok(unsafe { Tensor::from_ptr(result) })
}

/// `leaky_relu(x, negative_slope)` as one fused ATen kernel, with autograd and double
/// backward (the gradient penalty differentiates through it twice).
pub fn f_leaky_relu(x: &Tensor, negative_slope: f64) -> Result<Tensor, TchError> {
    let mut error: *mut c_char = std::ptr::null_mut();
    // SAFETY: `x` outlives the call; the shim only reads it.
    let result = unsafe { wb_leaky_relu(x.as_ptr(), negative_slope, &mut error) };
    take(result, error)
}

/// [`f_leaky_relu`] for model code, which, like tch's own operators, treats an ATen error as
/// a bug that fails the run (the worker turns the panic into a `RunFailed` event).
pub fn leaky_relu(x: &Tensor, negative_slope: f64) -> Tensor {
    match f_leaky_relu(x, negative_slope) {
        Ok(t) => t,
        Err(e) => panic!("leaky_relu: {e}"),
    }
}

/// Drops `x`'s accumulated gradient so the next backward writes a fresh one, as PyTorch's
/// `zero_grad(set_to_none=True)` does: no zero fill, no accumulation. Afterwards
/// `x.grad().defined()` is false until a backward pass reaches `x`.
pub fn clear_grad(x: &mut Tensor) -> Result<(), TchError> {
    let mut error: *mut c_char = std::ptr::null_mut();
    // SAFETY: `x` is a live tensor, borrowed mutably for the call.
    if unsafe { wb_clear_grad(x.as_mut_ptr(), &mut error) } {
        Ok(())
    } else {
        Err(error_message(error))
    }
}

/// Drops the gradient of every tensor, as `zero_grad(set_to_none=True)`; zero-fills one whose
/// gradient cannot be dropped (not expected for a live parameter; equivalent, only slower).
pub fn drop_grads<'a>(params: impl IntoIterator<Item = &'a mut Tensor>) {
    for p in params {
        if clear_grad(p).is_err() {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }
}

/// The environment variables by which a user sets glibc's allocator; with any of them (or a
/// `glibc.malloc.` tunable) set, [`keep_large_host_allocations`] leaves it alone.
const MALLOC_SETTINGS: [&str; 4] = [
    "MALLOC_ARENA_MAX",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
];

fn user_set_malloc() -> bool {
    MALLOC_SETTINGS
        .iter()
        .any(|v| std::env::var_os(v).is_some())
        || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc."))
}

/// Keeps the CPU's large tensors in the process between steps, as PyTorch's caching
/// allocator keeps GPU memory: host allocations up to 1 GiB come from one heap that every
/// thread shares, freed memory stays in it, and its free top is returned to the system only
/// beyond 1 GiB. With glibc's defaults every allocation over 32 MiB is mapped afresh and
/// unmapped when freed, and on any thread but the first, whose heaps hold at most 64 MiB,
/// every one over 64 MiB whatever the threshold, so each step page-faults its largest buffers
/// in again (README, "Why is my step slow"). Costs peak memory (12-24 % in the measurements
/// there). Leaves the allocator as it is when the user set glibc's malloc variables, and where
/// the C library is not glibc; returns whether every setting took (an older glibc, 2.33 for one,
/// refuses an mmap threshold over 32 MiB, and gets 32 MiB). Call it first in `main`, before any thread allocates: glibc's
/// arena count only binds threads that take an arena afterwards.
pub fn keep_large_host_allocations() -> bool {
    if user_set_malloc() {
        return false;
    }
    // SAFETY: mallopt only changes the allocator's settings, under its own lock.
    unsafe { wb_keep_large_allocations(1 << 30) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// This thread's minor page faults so far (`/proc/thread-self/stat`, field 10).
    #[cfg(target_os = "linux")]
    fn page_faults() -> u64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // After the command's closing parenthesis: state is field 3, minflt field 10.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        rest.split(' ').nth(7).unwrap().parse().unwrap()
    }

    /// Set in the child process of [`a_freed_large_buffer_is_reused_without_page_faults`].
    const CHILD: &str = "WORKBENCH_TEST_ALLOCATOR_CHILD";

    /// In a process of its own, so the setting comes before any thread but the harness's
    /// takes an arena (as in `main`) and no other test shares the allocator: a buffer over
    /// glibc's largest mmap threshold (48 MiB) and one over a thread's own heap (256 MiB),
    /// freed and filled again on a thread started afterwards, as the trainer's is, fault
    /// (almost) none of their pages in again; with glibc's defaults each page faults.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn a_freed_large_buffer_is_reused_without_page_faults() {
        if user_set_malloc() {
            return; // the user's settings stand, whatever they are
        }
        if std::env::var_os(CHILD).is_none() {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "engine::ops::tests::a_freed_large_buffer_is_reused_without_page_faults",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD, "1")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{text}");
            assert!(text.contains("1 passed"), "{text}");
            return;
        }
        assert!(keep_large_host_allocations());
        let faults = std::thread::Builder::new()
            .name("page-faults".into())
            .spawn(|| {
                [48usize, 256].map(|mib| {
                    // Filled on this thread (a tensor's fill may run on the intra-op threads).
                    let fill = || std::hint::black_box(vec![1u8; mib << 20]);
                    drop(fill());
                    let before = page_faults();
                    drop(fill());
                    (mib, page_faults() - before)
                })
            })
            .unwrap()
            .join()
            .unwrap();
        for (mib, faults) in faults {
            assert!(
                faults < 1000,
                "{mib} MiB filled again: {faults} page faults"
            );
        }
    }

    #[test]
    fn matches_the_definition_with_first_and_second_derivatives() {
        let x = Tensor::from_slice(&[-2.0f64, -0.5, 0.25, 3.0]).set_requires_grad(true);
        let y = leaky_relu(&(&x * &x * &x), 0.2);
        let want = [-1.6, -0.025, 0.015625, 27.0];
        let got: Vec<f64> = Vec::try_from(&y.detach()).unwrap();
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{got:?}");
        }
        // d/dx lrelu(x^3) = slope(x) * 3x^2; differentiate once more through the graph.
        let g = Tensor::run_backward(&[y.sum(Kind::Double)], &[&x], true, true);
        let g1: Vec<f64> = Vec::try_from(&g[0].detach()).unwrap();
        for (g, x) in g1.iter().zip([-2.0f64, -0.5, 0.25, 3.0]) {
            let s = if x > 0.0 { 1.0 } else { 0.2 };
            assert!((g - s * 3.0 * x * x).abs() < 1e-12, "{g1:?}");
        }
        let g2 = Tensor::run_backward(&[g[0].sum(Kind::Double)], &[&x], false, false);
        let g2: Vec<f64> = Vec::try_from(&g2[0]).unwrap();
        for (g, x) in g2.iter().zip([-2.0f64, -0.5, 0.25, 3.0]) {
            let s = if x > 0.0 { 1.0 } else { 0.2 };
            assert!((g - s * 6.0 * x).abs() < 1e-12, "{g2:?}");
        }
    }

    #[test]
    fn clear_grad_drops_the_gradient_and_backward_writes_a_fresh_one() {
        let mut w = Tensor::from_slice(&[1.0f32, 2.0]).set_requires_grad(true);
        (&w * 3.0).sum(Kind::Float).backward();
        assert!(w.grad().defined());
        clear_grad(&mut w).unwrap();
        assert!(!w.grad().defined());
        (&w * 5.0).sum(Kind::Float).backward();
        let g: Vec<f32> = Vec::try_from(&w.grad()).unwrap();
        assert_eq!(g, vec![5.0, 5.0]);
    }

    #[test]
    fn reports_aten_errors_as_values() {
        let ints = Tensor::from_slice(&[1i64, -2]).to_device(Device::Cpu);
        let err = f_leaky_relu(&ints, 0.2);
        assert!(
            err.is_err(),
            "leaky_relu on int64 should be refused by ATen"
        );
    }
}
