// torch's own c10d collectives for data-parallel training: a TCP store for the rendezvous and
// a Gloo process group (CPU tensors) or, where `nccl.cpp` was built (WB_HAVE_NCCL), an NCCL
// one (CUDA tensors), from the libtorch the project links. Each entry point
// returns false (or null) with `*error` set as `shim_error.hpp` says; no C++ exception
// crosses into Rust.
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <ATen/ATen.h>

#include "../shim_error.hpp"

#include <chrono>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

namespace {
// Only the first line: c10d appends a C++ stack trace to its messages.
void set_error(char **error, const std::exception &e) {
  std::string text = e.what();
  const auto end = text.find('\n');
  if (end != std::string::npos) {
    text.resize(end);
  }
  *error = wb::copy_message(text.c_str());
}
} // namespace

#ifdef WB_HAVE_NCCL
namespace wb {
c10::intrusive_ptr<c10d::Backend> nccl_backend(const c10::intrusive_ptr<c10d::Store> &store,
                                               int rank, int world, int gpu,
                                               std::chrono::milliseconds timeout);
} // namespace wb
#endif

struct WbGroup {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
};

extern "C" {

// Joins the group `world` ranks form through the store at addr:port. `host_store`: this
// process serves the store (rank 0, unless torchrun's agent already hosts it). `prefix`
// separates the keys of successive attempts (torchrun's restart count). `nccl`: an NCCL group
// (CUDA tensors) instead of Gloo, on CUDA device `gpu` (made the current one). Gloo's
// device: the interfaces `gloo_ifnames` lists (GLOO_SOCKET_IFNAME, comma-separated), else
// this node's address `gloo_host`, else the host name's (torch's default device); never
// MASTER_ADDR, which is a local address on one node only.
WbGroup *wb_dist_init(const char *addr, int port, int rank, int world, bool host_store,
                      const char *prefix, int64_t timeout_ms, bool nccl, int gpu,
                      const char *gloo_ifnames, const char *gloo_host, char **error) {
  try {
    const auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<uint16_t>(port);
    opts.isServer = host_store;
    opts.numWorkers = world;
    opts.waitWorkers = false;
    opts.timeout = timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(addr), opts);
    auto store = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), tcp);
    if (nccl) {
#ifdef WB_HAVE_NCCL
      auto group = new WbGroup();
      group->store = tcp;
      group->backend = wb::nccl_backend(store, rank, world, gpu, timeout);
      return group;
#else
      throw std::runtime_error(
          "this build has no NCCL backend (the CUDA headers were missing when it was built; "
          "scripts/setup.sh fetches them on a CUDA torch)");
#endif
    }
    (void)gpu;
    auto gloo = c10d::ProcessGroupGloo::Options::create(timeout);
    const std::string ifnames(gloo_ifnames);
    const std::string host(gloo_host);
    if (!ifnames.empty()) {
      size_t start = 0;
      while (start <= ifnames.size()) {
        const auto comma = ifnames.find(',', start);
        const auto name =
            ifnames.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        if (!name.empty()) {
          gloo->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(name));
        }
        if (comma == std::string::npos) {
          break;
        }
        start = comma + 1;
      }
    } else if (!host.empty()) {
      gloo->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(host));
    } else {
      gloo->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    auto group = new WbGroup();
    group->store = tcp;
    group->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, gloo);
    return group;
  } catch (const std::exception &e) {
    set_error(error, e);
    return nullptr;
  }
}

// Sums `t` over the ranks, in place.
bool wb_dist_allreduce_sum(WbGroup *g, at::Tensor *t, char **error) {
  try {
    std::vector<at::Tensor> ts{*t};
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    g->backend->allreduce(ts, opts)->wait();
    return true;
  } catch (const std::exception &e) {
    set_error(error, e);
    return false;
  }
}

// Overwrites `t` with rank `root`'s, in place.
bool wb_dist_broadcast(WbGroup *g, at::Tensor *t, int root, char **error) {
  try {
    std::vector<at::Tensor> ts{*t};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    g->backend->broadcast(ts, opts)->wait();
    return true;
  } catch (const std::exception &e) {
    set_error(error, e);
    return false;
  }
}

bool wb_dist_barrier(WbGroup *g, char **error) {
  try {
    g->backend->barrier()->wait();
    return true;
  } catch (const std::exception &e) {
    set_error(error, e);
    return false;
  }
}

void wb_dist_free(WbGroup *g) {
  try {
    delete g;
  } catch (...) {
  }
}

} // extern "C"
