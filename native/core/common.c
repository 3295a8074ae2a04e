#define _GNU_SOURCE
#include "ps_common.h"
#include "ps_internal.h"

#include <dlfcn.h>

#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static _Thread_local char tls_error[1024];

const char *ps_strerror(int status) {
  switch (status) {
    case PS_OK: return "ok";
    case PS_EINVAL: return "invalid argument";
    case PS_ENOMEM: return "out of memory";
    case PS_EIO: return "i/o error";
    case PS_EFORMAT: return "malformed file";
    case PS_EUNSUPPORTED: return "unsupported";
    case PS_ELIMIT: return "limit exceeded";
    case PS_ETORCH: return "libtorch error";
    case PS_ECANCELLED: return "cancelled";
    case PS_ENOTFOUND: return "not found";
    case PS_ESTATE: return "invalid state";
    default: return "unknown error";
  }
}

const char *ps_last_error(void) { return tls_error; }

void ps_clear_error(void) { tls_error[0] = '\0'; }

int ps_error(int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tls_error, sizeof tls_error, fmt, ap);
  va_end(ap);
  return status;
}

static ps_log_fn g_log_fn;
static void *g_log_user;

void ps_log_set(ps_log_fn fn, void *user) {
  g_log_fn = fn;
  g_log_user = user;
}

void ps_log(ps_log_level level, const char *fmt, ...) {
  ps_log_fn fn = g_log_fn;
  if (!fn) return;
  char buf[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  fn(level, buf, g_log_user);
}

int ps_default_threads(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

const char *ps_version(void) { return "0.1.0"; }

const char *ps_build_features(void) {
  return ""
#ifdef PS_HAVE_DICOM
         "dicom "
#endif
#ifdef PS_HAVE_TORCH
         "torch "
#endif
#ifdef PS_HAVE_CUDA
         "cuda "
#endif
         "png jpeg";
}

void ps__lib_folder(char *dir, size_t cap) {
  Dl_info info;
  if (!dir || cap == 0) return;
  dir[0] = 0;
  if (!dladdr((void *)&ps_error, &info) || !info.dli_fname) return;
  const char *slash = strrchr(info.dli_fname, '/');
  if (!slash) return;
  size_t n = (size_t)(slash - info.dli_fname) + 1;
  if (n >= cap) return;
  memcpy(dir, info.dli_fname, n);
  dir[n] = 0;
}

char *ps__path_join(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *s = malloc(n);
  if (s) snprintf(s, n, "%s/%s", dir, name);
  return s;
}

#define PS_BIG_MIN ((size_t)1 << 20) /* smaller buffers come from malloc */
#define PS_HUGE ((size_t)2 << 20)      /* x86-64's transparent huge page */

/* Zero-filled, from mmap: started on a 2 MB boundary so that transparent huge pages can back it
 * (where the kernel allows them for MADV_HUGEPAGE), and faulted in by one MADV_POPULATE_WRITE
 * (Linux 5.14+; elsewhere pages fault on first touch as before). On virtual machines a page
 * fault is a trap to the hypervisor: touching 64 MB page by page measured 190 ms here, populated
 * huge pages 4 ms. Callers write every byte they ask for, so nothing is committed in vain. */
void *ps__big_alloc(size_t bytes) {
  if (bytes < PS_BIG_MIN) return calloc(1, bytes ? bytes : 1);
  const size_t span = bytes + PS_HUGE;
  char *raw = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return NULL;
  char *p = (char *)(((uintptr_t)raw + PS_HUGE - 1) & ~(uintptr_t)(PS_HUGE - 1));
  const size_t page = (size_t)sysconf(_SC_PAGESIZE), used = (bytes + page - 1) / page * page;
  const size_t head = (size_t)(p - raw), tail = span - head - used;
  if (head) munmap(raw, head);
  if (tail) munmap(p + used, tail);
#ifdef MADV_HUGEPAGE
  madvise(p, bytes, MADV_HUGEPAGE); /* a hint: without transparent huge pages, 4 KB pages as before */
#endif
#ifdef MADV_POPULATE_WRITE
  madvise(p, bytes, MADV_POPULATE_WRITE); /* a hint too: EINVAL on older kernels */
#endif
  return p;
}

void ps__big_free(void *p, size_t bytes) {
  if (!p) return;
  if (bytes < PS_BIG_MIN) free(p);
  else munmap(p, bytes);
}
