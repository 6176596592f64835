// plandiff's bridge to PyTorch's c10d: a TCPStore rendezvous, a Gloo or NCCL process group,
// the collectives the trainer needs, and bf16 autocast (tch wraps only fp16's). Every entry
// point catches C++ exceptions and returns a malloc'd message (NULL on success), freed by
// pd_free_error; tensors are tch's `torch::Tensor*`.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#if defined(PLANDIFF_GLOO) || defined(PLANDIFF_NCCL)
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif
#ifdef PLANDIFF_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef PLANDIFF_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace {
char *dup_error(const std::string &what) {
  // The first line only: c10 messages carry a C++ backtrace after it.
  std::string line = what.substr(0, what.find('\n'));
  char *out = static_cast<char *>(std::malloc(line.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, line.c_str(), line.size() + 1);
  }
  return out;
}

#define PD_TRY(...)                                                                      \
  try {                                                                                  \
    __VA_ARGS__;                                                                         \
    return nullptr;                                                                      \
  } catch (const std::exception &e) {                                                    \
    return dup_error(e.what());                                                          \
  } catch (...) {                                                                        \
    return dup_error("unknown C++ exception");                                           \
  }

#if defined(PLANDIFF_GLOO) || defined(PLANDIFF_NCCL)
struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout;
  bool gloo = false;  // launches hold `launch_lock` (Gloo's launch only enqueues)
};

// Held while a Gloo collective is launched, never while it is awaited. c10d's flight recorder
// is one per process, and PyTorch 2.11 inserts a group's status into its map before taking its
// own lock (FlightRecorderDetail.hpp, recordWithResetEnabled): two groups of one process
// launching at once from two threads corrupt that map (a SIGSEGV in tests/gloo.rs, about one
// run in 50, where two ranks are two threads). A Gloo launch only enqueues, so this costs
// nothing; NCCL's first launch can block in communicator setup until every rank arrives, so a
// lock held there could deadlock ranks that are threads, and NCCL runs one rank a process.
std::mutex &launch_lock() {
  static std::mutex m;
  return m;
}

std::unique_lock<std::mutex> hold_launch(const Group *g) {
  return g->gloo ? std::unique_lock<std::mutex>(launch_lock()) : std::unique_lock<std::mutex>();
}

// Launches `launch(one_tensor_vector)` for each tensor (c10d treats a vector as one tensor per
// device, so each is its own collective), then waits for all of them.
template <class Launch> void each(Group *g, at::Tensor **ts, size_t n, Launch launch) {
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  works.reserve(n);
  {
    auto hold = hold_launch(g);
    for (size_t i = 0; i < n; ++i) {
      std::vector<at::Tensor> one{*ts[i]};
      works.push_back(launch(one));
    }
  }
  for (auto &w : works) {
    w->wait(g->timeout);
  }
}
#endif
} // namespace

extern "C" {

void pd_free_error(char *e) { std::free(e); }

int pd_has_gloo() {
#ifdef PLANDIFF_GLOO
  return 1;
#else
  return 0;
#endif
}

int pd_has_nccl() {
#ifdef PLANDIFF_NCCL
  return 1;
#else
  return 0;
#endif
}

// bf16 autocast for device type 0 (CPU) or 1 (CUDA); on leaving (enabled = 0) the cast
// cache is cleared, as torch.autocast's __exit__ does.
char *pd_autocast_bf16(int device_type, int enabled) {
  PD_TRY({
    at::DeviceType dt = device_type == 1 ? at::kCUDA : at::kCPU;
    if (enabled != 0) {
      at::autocast::set_autocast_dtype(dt, at::kBFloat16);
      at::autocast::set_autocast_enabled(dt, true);
      at::autocast::increment_nesting();
    } else {
      at::autocast::set_autocast_enabled(dt, false);
      if (at::autocast::decrement_nesting() == 0) {
        at::autocast::clear_cache();
      }
    }
  })
}

// The current CUDA device (tch has no call for it); NCCL binds a communicator to it.
char *pd_set_cuda_device(int index) {
#ifdef PLANDIFF_NCCL
  PD_TRY(c10::cuda::set_device(static_cast<c10::DeviceIndex>(index)))
#else
  (void)index;
  return dup_error("plandiff was built without NCCL");
#endif
}

// How pd_init joins a group (`ffi::InitOptions` on the Rust side, field for field).
struct PdInitOptions {
  const char *backend;  // "gloo" or "nccl"
  const char *host;
  int port;
  int rank;
  int world;
  int is_server;  // non-zero: host the TCPStore (a launch without torchrun's agent)
  const char *prefix;
  int64_t timeout_ms;
};

// Joins the group: `is_server` hosts the TCPStore, otherwise connects to it as a client.
char *pd_init(const PdInitOptions *o, void **out) {
#if defined(PLANDIFF_GLOO) || defined(PLANDIFF_NCCL)
  const char *backend = o->backend, *host = o->host, *prefix = o->prefix;
  int port = o->port, rank = o->rank, world = o->world, is_server = o->is_server;
  int64_t timeout_ms = o->timeout_ms;
  PD_TRY({
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(port);
    so.isServer = is_server != 0;
    so.numWorkers = static_cast<std::size_t>(world);
    so.waitWorkers = false;
    so.timeout = timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(host), so);
    c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), tcp);
    auto g = std::make_unique<Group>(Group{store, {}, timeout});
    std::string b(backend);
    if (b == "gloo") {
#ifdef PLANDIFF_GLOO
      auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
      const char *ifname = std::getenv("GLOO_SOCKET_IFNAME");
      if (ifname != nullptr && *ifname != '\0') {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      } else {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      g->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, opts);
      g->gloo = true;
#else
      throw std::runtime_error("plandiff was built without Gloo");
#endif
    } else if (b == "nccl") {
#ifdef PLANDIFF_NCCL
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = timeout;
      g->backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, opts);
#else
      throw std::runtime_error("plandiff was built without NCCL");
#endif
    } else {
      throw std::runtime_error("unknown backend " + b);
    }
    *out = g.release();
  })
#else
  (void)o; (void)out;
  return dup_error("plandiff was built without c10d");
#endif
}

// In-place all-reduce of each tensor (op: 0 sum, 1 max, 2 min); all launched, then awaited.
char *pd_all_reduce(void *group, at::Tensor **ts, size_t n, int op) {
#if defined(PLANDIFF_GLOO) || defined(PLANDIFF_NCCL)
  PD_TRY({
    auto g = static_cast<Group *>(group);
    c10d::AllreduceOptions o;
    o.reduceOp = op == 1 ? c10d::ReduceOp::MAX : (op == 2 ? c10d::ReduceOp::MIN : c10d::ReduceOp::SUM);
    o.timeout = g->timeout;
    each(g, ts, n, [&](std::vector<at::Tensor> &one) { return g->backend->allreduce(one, o); });
  })
#else
  (void)group; (void)ts; (void)n; (void)op;
  return dup_error("plandiff was built without c10d");
#endif
}

// In-place broadcast of each tensor from `root`.
char *pd_broadcast(void *group, at::Tensor **ts, size_t n, int root) {
#if defined(PLANDIFF_GLOO) || defined(PLANDIFF_NCCL)
  PD_TRY({
    auto g = static_cast<Group *>(group);
    c10d::BroadcastOptions o;
    o.rootRank = root;
    o.timeout = g->timeout;
    each(g, ts, n, [&](std::vector<at::Tensor> &one) { return g->backend->broadcast(one, o); });
  })
#else
  (void)group; (void)ts; (void)n; (void)root;
  return dup_error("plandiff was built without c10d");
#endif
}

char *pd_barrier(void *group) {
#if defined(PLANDIFF_GLOO) || defined(PLANDIFF_NCCL)
  PD_TRY({
    auto g = static_cast<Group *>(group);
    c10d::BarrierOptions o;
    o.timeout = g->timeout;
    c10::intrusive_ptr<c10d::Work> w;
    {
      auto hold = hold_launch(g);
      w = g->backend->barrier(o);
    }
    w->wait(g->timeout);
  })
#else
  (void)group;
  return dup_error("plandiff was built without c10d");
#endif
}

void pd_destroy(void *group) {
#if defined(PLANDIFF_GLOO) || defined(PLANDIFF_NCCL)
  auto g = static_cast<Group *>(group);
  try {
#ifdef PLANDIFF_NCCL
    if (auto nccl = c10::dynamic_intrusive_pointer_cast<c10d::ProcessGroupNCCL>(g->backend)) {
      nccl->shutdown();
    }
#endif
    g->backend.reset();
    g->store.reset();
  } catch (...) {
  }
  delete g;
#else
  (void)group;
#endif
}

} // extern "C"

extern "C" {
// Sets `param`'s gradient to `grad` (tch has no setter); c10d then reduces a gradient a
// rank did not produce (a parameter unused in its micro-batches) as zeros.
char *pd_set_grad(at::Tensor *param, at::Tensor *grad) { PD_TRY(param->mutable_grad() = *grad) }
}
