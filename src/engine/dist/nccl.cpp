// The NCCL backend of the c10d shim (CUDA tensors), compiled by `build.rs` only where the CUDA
// headers are in place: the wheel's `nvidia-nccl` ships `nccl.h`, and setup adds the CUDA
// runtime's `crt/` and CCCL headers (`nvidia-cuda-crt`, `nvidia-cuda-cccl`), which torch's
// `ProcessGroupNCCL.hpp` includes. Only headers: the symbols come from `libtorch_cuda.so`.
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include <chrono>

namespace wb {
// `gpu`: the rank's CUDA device, made the process's current one (so no context is created on
// GPU 0 by every rank) and NCCL's bound device.
c10::intrusive_ptr<c10d::Backend> nccl_backend(const c10::intrusive_ptr<c10d::Store> &store,
                                               int rank, int world, int gpu,
                                               std::chrono::milliseconds timeout) {
  auto opts = c10d::ProcessGroupNCCL::Options::create();
  opts->timeout = timeout;
  if (gpu >= 0) {
    // Through the device-guard registry (libc10), which libc10_cuda fills when libtorch_cuda
    // loads: no link-time dependency on libc10_cuda.
    c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)
        ->setDevice(c10::Device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(gpu)));
  }
  auto group = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, opts);
  if (gpu >= 0) {
    group->setBoundDeviceId(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(gpu)));
  }
  return group;
}
} // namespace wb
