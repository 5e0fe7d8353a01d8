// The NCCL backend of the c10d shim (CUDA tensors), compiled by `build.rs` only where the CUDA
// headers are in place: the wheel's `nvidia-nccl` ships `nccl.h`, and setup adds the CUDA
// runtime's `crt/` and CCCL headers (`nvidia-cuda-crt`, `nvidia-cuda-cccl`), which torch's
// `ProcessGroupNCCL.hpp` includes. Only headers: the symbols come from `libtorch_cuda.so`.
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include <chrono>

namespace wb {
c10::intrusive_ptr<c10d::Backend> nccl_backend(const c10::intrusive_ptr<c10d::Store> &store,
                                               int rank, int world,
                                               std::chrono::milliseconds timeout) {
  auto opts = c10d::ProcessGroupNCCL::Options::create();
  opts->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, opts);
}
} // namespace wb
