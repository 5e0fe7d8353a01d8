// ATen calls that tch cannot express. Operators whose tch bindings lose an argument: tch's generated API drops defaulted
// scalar arguments, so `Tensor::leaky_relu` is fixed at slope 0.01. These entry points call
// the same dispatcher functions (autograd included, double backward included) with the
// argument given. Each returns a new heap tensor that tch takes ownership of, or null with
// `*error` set to a malloc'd message that the caller frees with `wb_free_error`.
#include <ATen/ATen.h>

#include <cstdlib>
#include <exception>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "../shim_error.hpp"

using wb::copy_message;

extern "C" {

at::Tensor *wb_leaky_relu(const at::Tensor *x, double negative_slope, char **error) {
  try {
    return new at::Tensor(at::leaky_relu(*x, negative_slope));
  } catch (const std::exception &e) {
    *error = copy_message(e.what());
    return nullptr;
  }
}

// Drops the accumulated gradient (PyTorch's `zero_grad(set_to_none=True)`): the next backward
// then writes a fresh gradient instead of zero-filling and accumulating into the old one.
bool wb_clear_grad(at::Tensor *x, char **error) {
  try {
    x->mutable_grad().reset();
    return true;
  } catch (const std::exception &e) {
    *error = copy_message(e.what());
    return false;
  }
}

// Serves host allocations up to `threshold` bytes (32 MiB where glibc refuses more, as 2.33
// does) from one arena every thread shares, and trims the heap's free top only beyond
// `threshold` (glibc's arena count, mmap and trim thresholds); true when all three took, false
// where the C library has no such knobs.
bool wb_keep_large_allocations(int threshold) {
#if defined(__GLIBC__)
  bool arena = mallopt(M_ARENA_MAX, 1) == 1;
  bool mapped = mallopt(M_MMAP_THRESHOLD, threshold) == 1 ||
                mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1;
  bool trim = mallopt(M_TRIM_THRESHOLD, threshold) == 1;
  return arena && mapped && trim;
#else
  (void)threshold;
  return false;
#endif
}

void wb_free_error(char *error) { std::free(error); }

} // extern "C"
