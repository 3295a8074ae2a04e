/* loader.c — ps_torch.h inside libpneumoscope without linking libtorch.
 *
 * libtorch (Debian's pulls ~300 shared libraries: 0.5 s and 160 MB before main) lives in the
 * MODULE libpneumoscope_torch.so (torch.cpp). Every ps_torch.h function here is a stub, generated
 * from torch_api.def, that loads that module once (pthread_once, dlopen RTLD_NOW | RTLD_LOCAL) on
 * its first real use and forwards through its table. Looked for, in order:
 *   1. $PNEUMOSCOPE_TORCH_BACKEND when set (that path only);
 *   2. libpneumoscope_torch.so in the folder of this library (dladdr), as built and installed;
 *   3. the plain file name through the dynamic loader's search path.
 * When it cannot be loaded, every call fails cleanly (PS_EUNSUPPORTED, or the documented value)
 * with the first failure's text repeated: "torch: cannot load the libtorch backend <path>: <why>".
 *
 * Answered here without loading libtorch: ps_dtype_size/name, ps_torch_loaded,
 * ps_torch_set/get_threads before the load (the count is remembered and applied on load), and in a
 * build without CUDA (PS_HAVE_CUDA, decided at configure time for both sides) ps_torch_cuda_available
 * and ps_torch_resolve_device. A CPU request never needs libtorch to resolve.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ps_internal.h"
#include "ps_torch.h"
#include "torch_backend.h"

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static const ps_torch_backend *g_backend; /* written once inside g_once */
static atomic_int g_loaded;               /* 1 once g_backend is usable */
static char g_load_error[1536];           /* the first (only) failure, repeated to every caller */
static char g_backend_path[1024];

/* Threads asked for before the backend is loaded: applied when it loads. */
static pthread_mutex_t g_threads_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_threads; /* 0: not set (the backend starts with ps_default_threads()) */
static int g_threads_failed;
static atomic_int g_log_pending;

static void set_load_error(const char *path, const char *why) {
  snprintf(g_load_error, sizeof g_load_error, "torch: cannot load the libtorch backend %s: %s", path,
           why && *why ? why : "unknown error");
}

static void load_backend(void) {
  const char *env = getenv(PS_TORCH_BACKEND_ENV);
  void *h = NULL;
  char dir[960]; /* room for the file name in g_backend_path and for dlerror() in why */
  if (env && *env) {
    snprintf(g_backend_path, sizeof g_backend_path, "%s", env);
    if (!(h = dlopen(env, RTLD_NOW | RTLD_LOCAL))) {
      set_load_error(env, dlerror());
      return;
    }
  } else {
    ps__lib_folder(dir, sizeof dir);
    int beside = 0;
    if (dir[0]) {
      snprintf(g_backend_path, sizeof g_backend_path, "%s%s", dir, PS_TORCH_BACKEND_FILE);
      beside = access(g_backend_path, F_OK) == 0;
    }
    if (beside) {
      /* The one built or installed with this library: its own failure is the one to report. */
      if (!(h = dlopen(g_backend_path, RTLD_NOW | RTLD_LOCAL))) {
        set_load_error(g_backend_path, dlerror());
        return;
      }
    } else {
      snprintf(g_backend_path, sizeof g_backend_path, "%s", PS_TORCH_BACKEND_FILE);
      if (!(h = dlopen(PS_TORCH_BACKEND_FILE, RTLD_NOW | RTLD_LOCAL))) {
        char why[1024];
        snprintf(why, sizeof why, "not in %s and not on the library path (%s)", dir[0] ? dir : "this library's folder",
                 dlerror());
        set_load_error(PS_TORCH_BACKEND_FILE, why);
        return;
      }
    }
  }
  /* A module that fails the checks below stays mapped: unloading libtorch is not safe. */
  dlerror();
  ps_torch_backend_fn *get = (ps_torch_backend_fn *)dlsym(h, PS_TORCH_BACKEND_SYMBOL);
  if (!get) {
    set_load_error(g_backend_path, "no " PS_TORCH_BACKEND_SYMBOL " in it (not a PneumoScope libtorch backend)");
    return;
  }
  const ps_torch_backend *b = get();
  if (!b || b->size != sizeof(ps_torch_backend)) {
    char why[256];
    snprintf(why, sizeof why, "its function table has %u bytes, this library expects %u (built from another PneumoScope)",
             b ? (unsigned)b->size : 0u, (unsigned)sizeof(ps_torch_backend));
    set_load_error(g_backend_path, why);
    return;
  }
  pthread_mutex_lock(&g_threads_mu);
  if (g_threads > 0 && b->ps_torch_set_threads(g_threads) != PS_OK) g_threads_failed = g_threads;
  g_backend = b;
  atomic_store(&g_loaded, 1);
  pthread_mutex_unlock(&g_threads_mu);
  atomic_store(&g_log_pending, 1);
}

/* The backend, loading it on first use; NULL when it cannot be loaded. */
static const ps_torch_backend *backend(void) {
  if (atomic_load_explicit(&g_loaded, memory_order_acquire)) return g_backend;
  pthread_once(&g_once, load_backend);
  if (!atomic_load(&g_loaded)) return NULL;
  /* Logged outside pthread_once: a log callback that calls back into this API cannot deadlock. */
  if (atomic_exchange(&g_log_pending, 0)) {
    if (g_threads_failed) ps_log(PS_LOG_WARN, "torch: could not apply %d threads to libtorch", g_threads_failed);
    ps_log(PS_LOG_DEBUG, "torch: loaded %s (libtorch %s)", g_backend_path, g_backend->ps_torch_version());
  }
  return g_backend;
}

static int load_failed(void) { return ps_error(PS_EUNSUPPORTED, "%s", g_load_error); }

int ps_torch_loaded(void) { return atomic_load(&g_loaded) ? 1 : 0; }

/* ---- the generated stubs ------------------------------------------------------------------- */

#define PS_TORCH_CLEAR(p) \
  do {                    \
    if (p) *(p) = NULL;   \
  } while (0)
#define PS_TORCH_STATUS(name, params, args, on_fail) \
  int name params {                                 \
    const ps_torch_backend *b_ = backend();         \
    if (!b_) {                                      \
      on_fail;                                      \
      return load_failed();                         \
    }                                               \
    return b_->name args;                           \
  }
#define PS_TORCH_VALUE(type, name, params, args, fail) \
  type name params {                                  \
    const ps_torch_backend *b_ = backend();           \
    if (!b_) {                                        \
      load_failed();                                  \
      return fail;                                    \
    }                                                 \
    return b_->name args;                             \
  }
#define PS_TORCH_VOID(name, params, args)                  \
  void name params {                                       \
    if (atomic_load(&g_loaded)) g_backend->name args;      \
  }
#include "torch_api.def"

/* ---- answered here ------------------------------------------------------------------------- */

int ps_torch_cuda_available(void) {
#ifdef PS_HAVE_CUDA
  const ps_torch_backend *b = backend();
  if (!b) {
    load_failed();
    return 0;
  }
  return b->ps_torch_cuda_available();
#else
  return 0; /* a libtorch without CUDA: nothing to ask it */
#endif
}

int ps_torch_resolve_device(ps_device want, ps_device *out) {
  if (!out) return ps_error(PS_EINVAL, "torch: out is NULL");
  if (want != PS_DEVICE_CPU && want != PS_DEVICE_CUDA && want != PS_DEVICE_AUTO)
    return ps_error(PS_EINVAL, "torch: unknown device %d", (int)want);
  if (want == PS_DEVICE_CPU) {
    *out = PS_DEVICE_CPU;
    return PS_OK;
  }
#ifdef PS_HAVE_CUDA
  const ps_torch_backend *b = backend();
  if (!b) return load_failed();
  return b->ps_torch_resolve_device(want, out);
#else
  if (want == PS_DEVICE_AUTO) {
    *out = PS_DEVICE_CPU;
    return PS_OK;
  }
  return ps_error(PS_EUNSUPPORTED, "torch: CUDA requested but not available");
#endif
}

int ps_torch_set_threads(int n) {
  if (n < 0) return ps_error(PS_EINVAL, "torch: thread count must be >= 0");
  if (n == 0) n = ps_default_threads();
  if (n < 1) n = 1;
  int st = PS_OK;
  pthread_mutex_lock(&g_threads_mu);
  if (atomic_load(&g_loaded)) st = g_backend->ps_torch_set_threads(n);
  else g_threads = n;
  pthread_mutex_unlock(&g_threads_mu);
  return st;
}

int ps_torch_get_threads(void) {
  int n;
  pthread_mutex_lock(&g_threads_mu);
  if (atomic_load(&g_loaded)) n = g_backend->ps_torch_get_threads();
  else n = g_threads > 0 ? g_threads : ps_default_threads();
  pthread_mutex_unlock(&g_threads_mu);
  return n < 1 ? 1 : n;
}

