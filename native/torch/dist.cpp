// dist.cpp — data-parallel training over libtorch's own c10d (ps_torch.h, "data-parallel"):
// TCPStore rendezvous, ProcessGroupGloo on CPU, and c10d::Reducer, the gradient reducer behind
// PyTorch's DistributedDataParallel (bucketed all-reduce of averaged gradients, launched from
// autograd hooks while backward still runs). Nothing here is a transport of our own.
// Built into libpneumoscope_torch.so when libtorch has c10d and Gloo's headers are present
// (PS_HAVE_GLOO); otherwise every function says the build has no data-parallel support.
#include "torch_internal.hpp"

#include <chrono>
#include <cstring>
#include <thread>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#ifdef PS_HAVE_GLOO
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/comm.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>
#endif

using namespace ps_torch_impl;

struct ps_dist {
  int rank = 0, world = 1;
  double timeout_s = 300;
#ifdef PS_HAVE_GLOO
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
  std::unique_ptr<c10d::Reducer> reducer;
#endif
};

namespace {

ps_dist *D(ps_dist *d) {
  if (!d) fail(PS_EINVAL, "dist: process group is NULL");
  return d;
}

#ifdef PS_HAVE_GLOO
std::chrono::milliseconds ms(double s) { return std::chrono::milliseconds((int64_t)(s * 1000.0)); }

// A collective that failed: "rank R of W: WHAT failed: <c10d's reason>". The caller may add
// ps_dist_check_peers' verdict (which rank is gone).
[[noreturn]] void collective_failed(const ps_dist *d, const char *what, const std::exception &e) {
  fail(PS_EIO, "dist: rank " + std::to_string(d->rank) + " of " + std::to_string(d->world) + ": " + what +
                   " failed: " + first_lines(e.what()));
}

void wait(const ps_dist *d, const c10::intrusive_ptr<c10d::Work> &w, const char *what) {
  try {
    w->wait();
  } catch (const std::exception &e) {
    collective_failed(d, what, e);
  }
}

// A collective over n doubles in place (small control values): start(t) launches it on a copy.
template <class Start>
void on_f64(const ps_dist *d, double *v, int n, const char *what, Start start) {
  if (n < 1 || !v) fail(PS_EINVAL, "dist: bad value list");
  std::vector<at::Tensor> t{torch::from_blob(v, {n}, at::kDouble).clone()};
  wait(d, start(t), what);
  std::memcpy(v, t[0].data_ptr<double>(), sizeof(double) * n);
}
#endif

[[noreturn]] void no_c10d() {
  fail(PS_EUNSUPPORTED,
       "dist: this build has no data-parallel training (libtorch's c10d with Gloo; on Debian install libgloo-dev and "
       "rebuild)");
}

}  // namespace

extern "C" {

int ps_dist_available(void) {
#ifdef PS_HAVE_GLOO
  return 1;
#else
  return 0;
#endif
}

int ps_dist_create(ps_dist **out, const ps_dist_opts *o) {
  PS_PROTECT({
    if (!out) fail(PS_EINVAL, "dist: out is NULL");
    *out = nullptr;
    if (!o) fail(PS_EINVAL, "dist: no options");
    if (o->world_size < 1 || o->rank < 0 || o->rank >= o->world_size)
      fail(PS_EINVAL, "dist: rank " + std::to_string(o->rank) + " outside a world of " + std::to_string(o->world_size));
    if (o->device != PS_DEVICE_CPU)
      fail(PS_EUNSUPPORTED, "dist: only CPU ranks (Gloo) are built here; NCCL for CUDA ranks is not part of this build");
#ifndef PS_HAVE_GLOO
    no_c10d();
#else
    if (!o->master_addr || !*o->master_addr) fail(PS_EINVAL, "dist: no MASTER_ADDR");
    if (o->master_port < 1 || o->master_port > 65535)
      fail(PS_EINVAL, "dist: MASTER_PORT " + std::to_string(o->master_port) + " out of range 1..65535");
    auto d = std::make_unique<ps_dist>();
    d->rank = o->rank, d->world = o->world_size;
    d->timeout_s = o->timeout_s > 0 ? o->timeout_s : 300;
    // The store, as torch.distributed's env:// rendezvous makes it: rank 0 serves it, or every rank
    // is a client of torchrun's agent store (TORCHELASTIC_USE_AGENT_STORE) under the attempt's prefix.
    c10d::TCPStoreOptions so;
    so.port = (std::uint16_t)o->master_port;
    so.isServer = !o->agent_store && o->rank == 0;
    so.numWorkers = (size_t)o->world_size;
    so.waitWorkers = !o->agent_store;
    so.timeout = ms(d->timeout_s);
    so.multiTenant = true;
    try {
      auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(o->master_addr), so);
      if (o->agent_store)
        d->store = c10::make_intrusive<c10d::PrefixStore>("/worker/attempt_" + std::to_string(o->restart_count), tcp);
      else
        d->store = tcp;
    } catch (const std::exception &e) {
      fail(PS_EIO, "dist: rank " + std::to_string(o->rank) + " of " + std::to_string(o->world_size) +
                       ": rendezvous at " + o->master_addr + ":" + std::to_string(o->master_port) + " failed: not all " +
                       std::to_string(o->world_size) + " ranks arrived within " + std::to_string((int)d->timeout_s) +
                       " s (" + first_lines(e.what()) + ")");
    }
    auto go = c10d::ProcessGroupGloo::Options::create(ms(d->timeout_s));
    const char *ifname = std::getenv("GLOO_SOCKET_IFNAME");  // as torch.distributed: a comma list
    if (ifname && *ifname) {
      std::string s(ifname);
      size_t p = 0;
      while (p <= s.size()) {
        size_t q = s.find(',', p);
        if (q == std::string::npos) q = s.size();
        if (q > p) go->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(s.substr(p, q - p)));
        p = q + 1;
      }
    } else {
      go->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    go->threads = 2;
    try {
      d->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(d->store, o->rank, o->world_size, go);
    } catch (const std::exception &e) {
      fail(PS_EIO, "dist: rank " + std::to_string(o->rank) + " of " + std::to_string(o->world_size) +
                       ": the Gloo process group did not form: not all " + std::to_string(o->world_size) +
                       " ranks arrived within " + std::to_string((int)d->timeout_s) + " s (" + first_lines(e.what()) +
                       ")");
    }
    *out = d.release();
    return PS_OK;
#endif
  })
}

void ps_dist_free(ps_dist *d) {
  try {
    delete d;
  } catch (...) {
  }
}

int ps_dist_rank(const ps_dist *d) { return d ? d->rank : 0; }
int ps_dist_world_size(const ps_dist *d) { return d ? d->world : 1; }

#ifdef PS_HAVE_GLOO

int ps_dist_broadcast_(ps_dist *d, ps_tensor *const *ts, int n, int root) {
  PS_PROTECT({
    D(d);
    if (n < 0 || (n > 0 && !ts)) fail(PS_EINVAL, "dist: bad tensor list");
    if (root < 0 || root >= d->world) fail(PS_EINVAL, "dist: root rank out of range");
    std::vector<at::Tensor> v;
    for (int i = 0; i < n; i++) v.push_back(T(ts[i]));
    at::NoGradGuard ng;
    try {
      // DDP's module-state sync: tensors packed into 256 MB buckets, one broadcast each.
      c10d::broadcast_coalesced(d->pg, v, (size_t)256 << 20, root);
    } catch (const std::exception &e) {
      collective_failed(d, "broadcast", e);
    }
    return PS_OK;
  })
}

int ps_dist_broadcast_f64(ps_dist *d, double *v, int n, int root) {
  PS_PROTECT({
    D(d);
    if (root < 0 || root >= d->world) fail(PS_EINVAL, "dist: root rank out of range");
    c10d::BroadcastOptions bo;
    bo.rootRank = root;
    on_f64(d, v, n, "broadcast", [&](std::vector<at::Tensor> &t) { return d->pg->broadcast(t, bo); });
    return PS_OK;
  })
}

int ps_dist_allreduce_sum_f64(ps_dist *d, double *v, int n) {
  PS_PROTECT({
    D(d);
    on_f64(d, v, n, "all-reduce", [&](std::vector<at::Tensor> &t) { return d->pg->allreduce(t); });
    return PS_OK;
  })
}

int ps_dist_barrier(ps_dist *d) {
  PS_PROTECT({
    D(d);
    wait(d, d->pg->barrier(), "barrier");
    return PS_OK;
  })
}

int ps_dist_check_peers(ps_dist *d, double timeout_s, const char *reason) {
  PS_PROTECT({
    D(d);
    // Through the rendezvous store, not the process group (whose links to a dead rank are gone):
    // each failing rank posts why it stops, then looks for the others' posts.
    const std::string me = "pneumoscope/stopped/" + std::to_string(d->rank);
    try {
      d->store->set(me, std::vector<uint8_t>(reason ? reason : "", reason ? reason + std::strlen(reason) : nullptr));
    } catch (const std::exception &) {
      fail(PS_EIO, d->rank == 0 ? "the rendezvous store (torchrun's agent) is gone"
                                : "rank 0 is gone (it hosted the rendezvous store)");
    }
    const auto deadline = std::chrono::steady_clock::now() + ms(timeout_s > 0 ? timeout_s : 10);
    std::vector<int> silent;
    std::string told;
    for (;;) {
      silent.clear(), told.clear();
      try {
        for (int r = 0; r < d->world; r++) {
          if (r == d->rank) continue;
          const std::string k = "pneumoscope/stopped/" + std::to_string(r);
          if (!d->store->check({k})) {
            silent.push_back(r);
          } else if (told.empty()) {
            auto v = d->store->get(k);
            told = "rank " + std::to_string(r) + " stopped: " + std::string(v.begin(), v.end());
          }
        }
      } catch (const std::exception &) {
        fail(PS_EIO, "rank 0 is gone (it hosted the rendezvous store)");
      }
      if (silent.empty() || std::chrono::steady_clock::now() >= deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (silent.empty()) {
      if (told.empty()) return PS_OK;
      fail(PS_EIO, told);
    }
    std::string m = silent.size() == 1 ? "rank " : "ranks ";
    for (size_t i = 0; i < silent.size(); i++) m += (i ? ", " : "") + std::to_string(silent[i]);
    m += " did not answer within " + std::to_string((int)(timeout_s > 0 ? timeout_s : 10)) + " s (killed or stuck)";
    if (!told.empty()) m += "; " + told;
    fail(PS_EIO, m);
  })
}

int ps_dist_reducer_create(ps_dist *d, ps_tensor *const *params, int n) {
  PS_PROTECT({
    D(d);
    if (n < 1 || !params) fail(PS_EINVAL, "dist: no parameters");
    std::vector<at::Tensor> p;
    for (int i = 0; i < n; i++) {
      const at::Tensor &t = T(params[i], "parameter");
      if (!t.requires_grad()) fail(PS_EINVAL, "dist: parameter " + std::to_string(i) + " does not require grad");
      p.push_back(t);
    }
    try {
      c10d::verify_params_across_processes(d->pg, p, c10::nullopt);
    } catch (const std::exception &e) {
      collective_failed(d, "checking that every rank has the same parameters", e);
    }
    // Buckets as DistributedDataParallel makes them: 1 MB first, then 25 MB, in reverse parameter
    // order (about the order backward produces the gradients); rebuilt once from the real order.
    std::vector<size_t> limits{(size_t)c10d::kDefaultFirstBucketBytes, (size_t)c10d::kDefaultBucketBytesCap};
    auto assign = c10d::compute_bucket_assignment_by_size(p, limits, std::vector<bool>(p.size(), false));
    auto buckets = std::get<0>(assign);
    auto sizes = std::get<1>(assign);
    std::reverse(buckets.begin(), buckets.end());
    std::reverse(sizes.begin(), sizes.end());
    std::unordered_map<size_t, std::string> names;
    d->reducer = std::make_unique<c10d::Reducer>(p, buckets, sizes, d->pg, std::vector<bool>(p.size(), false),
                                                 (int64_t)c10d::kDefaultBucketBytesCap, false, false, names,
                                                 (int64_t)c10d::kDefaultFirstBucketBytes);
    return PS_OK;
  })
}

int ps_dist_expect_backward(ps_dist *d) {
  PS_PROTECT({
    D(d);
    if (!d->reducer) fail(PS_ESTATE, "dist: no reducer (ps_dist_reducer_create)");
    // What DistributedDataParallel.forward does when gradients are to be synchronised.
    try {
      d->reducer->rebuild_buckets();
    } catch (const std::exception &e) {
      collective_failed(d, "rebuilding the gradient buckets", e);
    }
    d->reducer->prepare_for_forward();
    d->reducer->prepare_for_backward({});
    return PS_OK;
  })
}

#else  // no Gloo: ps_dist_create refuses, so no group exists; every call says why

#define PS_DIST_NONE(signature) \
  signature {                    \
    PS_PROTECT(no_c10d();)       \
  }
PS_DIST_NONE(int ps_dist_broadcast_(ps_dist *, ps_tensor *const *, int, int))
PS_DIST_NONE(int ps_dist_broadcast_f64(ps_dist *, double *, int, int))
PS_DIST_NONE(int ps_dist_allreduce_sum_f64(ps_dist *, double *, int))
PS_DIST_NONE(int ps_dist_barrier(ps_dist *))
PS_DIST_NONE(int ps_dist_check_peers(ps_dist *, double, const char *))
PS_DIST_NONE(int ps_dist_reducer_create(ps_dist *, ps_tensor *const *, int))
PS_DIST_NONE(int ps_dist_expect_backward(ps_dist *))

#endif  // PS_HAVE_GLOO

}  // extern "C"
