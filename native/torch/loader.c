/* loader.c — ps_torch.h inside libpneumoscope without linking libtorch.
 *
 * libtorch (Debian's pulls ~300 shared libraries: 0.5 s and 160 MB before main) lives in the
 * MODULE libpneumoscope_torch.so (torch.cpp). Every ps_torch.h function here is a stub, generated
 * from torch_api.def, that loads that module once (dlopen RTLD_NOW | RTLD_LOCAL) on its first real
 * use and forwards through its table. Looked for, in order:
 *   1. the location given to ps_torch_set_backend();
 *   2. $PNEUMOSCOPE_TORCH_BACKEND when set (that location only);
 *   3. libpneumoscope_torch.so in the folder of this library (dladdr), as built and installed;
 *   4. the plain file name through the dynamic loader's search path;
 *   5. libpneumoscope_torch-<X.Y>.so in the folder of this library, when the dynamic loader finds
 *      the libtorch it was built against (the Fiji archive ships Debian 12's: libtorch 1.13).
 * A location (1, 2) is the backend file, a folder holding libpneumoscope_torch.so, or a libtorch
 * `lib` folder (PyTorch's site-packages/torch/lib, a libtorch download's lib, Debian's
 * /usr/lib/x86_64-linux-gnu; the folder above one is taken too). For a libtorch folder the
 * loader reads the folder's version (version.py, build-version, TorchConfigVersion.cmake or the
 * soname), picks a backend built against that version beside this library (the versioned name
 * first, then the plain one; read from the module's ELF DT_NEEDED/RUNPATH, never by loading it)
 * whose libtorch file names the folder holds, maps the folder's libc10/libtorch first, then the
 * backend: its DT_NEEDED entries match those already-loaded sonames, so the folder's libtorch is
 * the one it uses and no second libtorch comes in. RTLD_LOCAL is enough for that match (glibc
 * compares DT_NEEDED against every loaded object), so libtorch's symbols never become global.
 * A folder whose version no backend matches fails before anything is mapped, with both versions
 * and the cmake command that builds a matching backend.
 *
 * When it cannot be loaded, every call fails cleanly (PS_EUNSUPPORTED, or the documented value)
 * with the failure's text repeated: "torch: cannot load the libtorch backend <where>: <why>".
 * ps_torch_set_backend() after such a failure tries again on the next use, unless the failed try
 * left a libtorch mapped (unloading libtorch is not safe): then the failure stays.
 *
 * Answered here without loading libtorch: ps_dtype_size/name, ps_torch_loaded, ps_torch_set_backend,
 * ps_torch_set/get_threads before the load (the count is remembered and applied on load), and in a
 * build without CUDA (PS_HAVE_CUDA, decided at configure time for both sides) ps_torch_cuda_available
 * and ps_torch_resolve_device. A CPU request never needs libtorch to resolve.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ps_internal.h"
#include "ps_torch.h"
#include "torch_backend.h"

/* Bounded formatting (messages and paths clipped, never overrun): fmt writes, append adds. */
static void fmt(char *dst, size_t cap, const char *f, ...) PS_PRINTF(3, 4);
static void fmt(char *dst, size_t cap, const char *f, ...) {
  va_list ap;
  va_start(ap, f);
  vsnprintf(dst, cap, f, ap);
  va_end(ap);
}
static void append(char *dst, size_t cap, const char *f, ...) PS_PRINTF(3, 4);
static void append(char *dst, size_t cap, const char *f, ...) {
  size_t n = strnlen(dst, cap);
  if (n + 1 >= cap) return;
  va_list ap;
  va_start(ap, f);
  vsnprintf(dst + n, cap - n, f, ap);
  va_end(ap);
}

/* Loading state, under g_load_mu; g_loaded is the lock-free fast path once loaded. */
enum { LOAD_NOT_TRIED, LOAD_DONE, LOAD_FAILED };
static pthread_mutex_t g_load_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_state = LOAD_NOT_TRIED;
static int g_stuck;                       /* a failed try left libtorch mapped: no retry */
static const ps_torch_backend *g_backend; /* set once, under g_load_mu */
static atomic_int g_loaded;               /* 1 once g_backend is usable */
static char g_load_error[4096];           /* the failure, repeated to every caller */
static char g_backend_path[PATH_MAX];     /* the loaded module, as found (its real path once loaded) */
static char g_torch_dir[PATH_MAX];        /* the libtorch folder preloaded for it, or "" */
static char g_location[PATH_MAX];         /* ps_torch_set_backend's location, or "" */

/* Threads asked for before the backend is loaded: applied when it loads. */
static pthread_mutex_t g_threads_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_threads; /* 0: not set (the backend starts with ps_default_threads()) */
static int g_threads_failed;
static atomic_int g_log_pending;

static void set_load_error(const char *path, const char *why) {
  fmt(g_load_error, sizeof g_load_error, "torch: cannot load the libtorch backend %s: %s", path,
      why && *why ? why : "unknown error");
}

/* ---- what a file or folder is, read without loading anything ------------------------------ */

#define MAX_NEEDED 48
typedef struct elf_dyn {
  char needed[MAX_NEEDED][128]; /* DT_NEEDED names */
  int n_needed;
  char runpath[2048]; /* DT_RUNPATH, else DT_RPATH ("" when none) */
} elf_dyn;

/* File offset of virtual address va in an ELF's PT_LOAD segments, or -1. */
static long elf_offset(const ElfW(Phdr) * ph, int n, ElfW(Addr) va) {
  for (int i = 0; i < n; i++)
    if (ph[i].p_type == PT_LOAD && va >= ph[i].p_vaddr && va - ph[i].p_vaddr < ph[i].p_filesz)
      return (long)(ph[i].p_offset + (va - ph[i].p_vaddr));
  return -1;
}

/* The dynamic section's DT_NEEDED and RUNPATH of a shared object of this machine's class; 0 on
 * success, -1 when it is not one (not ELF, another class, truncated). Bounds-checked throughout. */
static int elf_read_dyn(const char *path, elf_dyn *out) {
  memset(out, 0, sizeof *out);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  int ok = -1;
  ElfW(Ehdr) eh;
  ElfW(Phdr) ph[64];
  ElfW(Dyn) *dyn = NULL;
  char *str = NULL;
  if (pread(fd, &eh, sizeof eh, 0) != (ssize_t)sizeof eh || memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
      eh.e_ident[EI_CLASS] != (sizeof(void *) == 8 ? ELFCLASS64 : ELFCLASS32) || eh.e_phentsize != sizeof(ElfW(Phdr)) ||
      eh.e_phnum == 0 || eh.e_phnum > 64)
    goto done;
  size_t phsz = (size_t)eh.e_phnum * sizeof(ElfW(Phdr));
  if (pread(fd, ph, phsz, (off_t)eh.e_phoff) != (ssize_t)phsz) goto done;
  const ElfW(Phdr) *pd = NULL;
  for (int i = 0; i < eh.e_phnum; i++)
    if (ph[i].p_type == PT_DYNAMIC) pd = &ph[i];
  if (!pd || pd->p_filesz == 0 || pd->p_filesz > (1u << 20)) goto done;
  size_t nd = pd->p_filesz / sizeof(ElfW(Dyn));
  if (!(dyn = malloc(nd * sizeof *dyn)) ||
      pread(fd, dyn, nd * sizeof *dyn, (off_t)pd->p_offset) != (ssize_t)(nd * sizeof *dyn))
    goto done;
  ElfW(Addr) strtab = 0;
  size_t strsz = 0;
  for (size_t i = 0; i < nd && dyn[i].d_tag != DT_NULL; i++) {
    if (dyn[i].d_tag == DT_STRTAB) strtab = dyn[i].d_un.d_ptr;
    if (dyn[i].d_tag == DT_STRSZ) strsz = dyn[i].d_un.d_val;
  }
  long so = elf_offset(ph, eh.e_phnum, strtab);
  if (!strtab || so < 0 || strsz == 0 || strsz > (16u << 20) || !(str = malloc(strsz + 1)) ||
      pread(fd, str, strsz, so) != (ssize_t)strsz)
    goto done;
  str[strsz] = 0;
  const char *rpath = NULL, *runpath = NULL;
  for (size_t i = 0; i < nd && dyn[i].d_tag != DT_NULL; i++) {
    if (dyn[i].d_un.d_val >= strsz) continue;
    const char *s = str + dyn[i].d_un.d_val;
    if (dyn[i].d_tag == DT_NEEDED && out->n_needed < MAX_NEEDED)
      fmt(out->needed[out->n_needed++], sizeof out->needed[0], "%s", s);
    else if (dyn[i].d_tag == DT_RUNPATH)
      runpath = s;
    else if (dyn[i].d_tag == DT_RPATH)
      rpath = s;
  }
  fmt(out->runpath, sizeof out->runpath, "%s", runpath ? runpath : rpath ? rpath : "");
  ok = 0;
done:
  free(str);
  free(dyn);
  close(fd);
  return ok;
}

static int is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* A libtorch library name: libc10*.so*, libtorch*.so* (the ones a backend's libtorch is made of). */
static int is_torch_lib(const char *name) {
  return strncmp(name, "libc10", 6) == 0 || strncmp(name, "libtorch", 8) == 0;
}

/* Preload order: each after what it needs (libc10 < libc10_cuda < libtorch_cpu < libtorch_cuda < libtorch). */
static int torch_lib_rank(const char *name) {
  if (strncmp(name, "libc10.", 7) == 0) return 0;
  if (strncmp(name, "libc10", 6) == 0) return 1;
  if (strncmp(name, "libtorch_cpu.", 13) == 0) return 2;
  if (strncmp(name, "libtorch_", 9) == 0) return 3;
  return 4;
}

/* 1 when dir holds libtorch_cpu.so* and libc10.so* (a libtorch lib folder). */
static int is_torch_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int cpu = 0, c10 = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (strncmp(e->d_name, "libtorch_cpu.so", 15) == 0) cpu = 1;
    if (strncmp(e->d_name, "libc10.so", 9) == 0) c10 = 1;
  }
  closedir(d);
  return cpu && c10;
}

/* major.minor of a version text ("2.3.1+cu121" -> 2, 3); 0 when it has none. */
static int version_mm(const char *v, int *major, int *minor) { return v && sscanf(v, "%d.%d", major, minor) == 2; }

static int same_mm(const char *a, const char *b) {
  int a1, a2, b1, b2;
  return version_mm(a, &a1, &a2) && version_mm(b, &b1, &b2) && a1 == b1 && a2 == b2;
}

/* The first quoted or bare version-looking token after `key` in file (e.g. __version__ = '2.3.1'). */
static int version_from_file(const char *file, const char *key, char *ver, size_t cap) {
  FILE *f = fopen(file, "r");
  if (!f) return 0;
  char line[512];
  int found = 0;
  while (!found && fgets(line, sizeof line, f)) {
    const char *p = key[0] ? strstr(line, key) : line;
    if (!p) continue;
    p += strlen(key);
    p += strcspn(p, "0123456789");
    size_t n = strspn(p, "0123456789.abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+_-");
    int a, b;
    if (n && n < cap && sscanf(p, "%d.%d", &a, &b) == 2) {
      fmt(ver, cap, "%.*s", (int)n, p);
      found = 1;
    }
  }
  fclose(f);
  return found;
}

/* The libtorch version of a libtorch lib folder and where it was read; 0 when unknown. */
static int torch_dir_version(const char *dir, char *ver, size_t cap, char *from, size_t from_cap) {
  static const struct {
    const char *rel, *key;
  } srcs[] = {
      {"/../version.py", "__version__"},                                     /* pip / conda torch */
      {"/../build-version", ""},                                             /* a libtorch download */
      {"/../share/cmake/Torch/TorchConfigVersion.cmake", "PACKAGE_VERSION"}, /* both */
      {"/cmake/Torch/TorchConfigVersion.cmake", "PACKAGE_VERSION"},          /* Debian's libtorch-dev */
  };
  char p[PATH_MAX + 64];
  for (size_t i = 0; i < sizeof srcs / sizeof srcs[0]; i++) {
    fmt(p, sizeof p, "%s%s", dir, srcs[i].rel);
    if (version_from_file(p, srcs[i].key, ver, cap)) {
      char real[PATH_MAX];
      fmt(from, from_cap, "%s", realpath(p, real) ? real : p);
      return 1;
    }
  }
  DIR *d = opendir(dir); /* a versioned soname: libtorch_cpu.so.1.13 */
  if (!d) return 0;
  struct dirent *e;
  int found = 0;
  while (!found && (e = readdir(d))) {
    int a, b;
    if (strncmp(e->d_name, "libtorch_cpu.so.", 16) == 0 && sscanf(e->d_name + 16, "%d.%d", &a, &b) == 2) {
      fmt(ver, cap, "%d.%d", a, b);
      fmt(from, from_cap, "%s/%s", dir, e->d_name);
      found = 1;
    }
  }
  closedir(d);
  return found;
}

/* The libtorch version a backend module was built against, from its file alone: a versioned
 * libtorch_cpu soname in DT_NEEDED, its own versioned name, or the libtorch folder in its RUNPATH. */
static int backend_torch_version(const char *file, const elf_dyn *dyn, char *ver, size_t cap) {
  int a, b;
  for (int i = 0; i < dyn->n_needed; i++)
    if (strncmp(dyn->needed[i], "libtorch_cpu.so.", 16) == 0 && sscanf(dyn->needed[i] + 16, "%d.%d", &a, &b) == 2) {
      fmt(ver, cap, "%d.%d", a, b);
      return 1;
    }
  const char *base = strrchr(file, '/');
  base = base ? base + 1 : file;
  if (strncmp(base, "libpneumoscope_torch-", 21) == 0 && sscanf(base + 21, "%d.%d", &a, &b) == 2) {
    fmt(ver, cap, "%d.%d", a, b);
    return 1;
  }
  char origin[PATH_MAX], rp[sizeof dyn->runpath];
  fmt(origin, sizeof origin, "%.*s", base > file ? (int)(base - file - 1) : 1, base > file ? file : ".");
  fmt(rp, sizeof rp, "%s", dyn->runpath);
  for (char *save = NULL, *d = strtok_r(rp, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
    char dir[PATH_MAX + 64], from[PATH_MAX + 64];
    if (strncmp(d, "$ORIGIN", 7) == 0)
      fmt(dir, sizeof dir, "%s%s", origin, d + 7);
    else
      fmt(dir, sizeof dir, "%s", d);
    if (is_torch_dir(dir) && torch_dir_version(dir, ver, cap, from, sizeof from)) return 1;
  }
  return 0;
}

/* What to load: the module, and the libtorch folder to map first ("" = none). */
typedef struct load_plan {
  char backend[PATH_MAX];
  char torch_dir[PATH_MAX];
  char torch_version[64];
} load_plan;

/* The folder to name in the advice: where cmake finds TorchConfig.cmake for dir. */
static void torch_cmake_dir(const char *dir, char *out, size_t cap) {
  char p[PATH_MAX + 64];
  fmt(p, sizeof p, "%s/../share/cmake/Torch", dir);
  if (!is_dir(p)) fmt(p, sizeof p, "%s/cmake/Torch", dir);
  if (!is_dir(p)) fmt(p, sizeof p, "%s/../share/cmake/Torch", dir);
  char real[PATH_MAX];
  fmt(out, cap, "%s", realpath(p, real) ? real : p);
}

/* Pick a backend for the libtorch lib folder dir (version ver, read from ver_from) among: the
 * folder's own libpneumoscope_torch.so, libpneumoscope_torch-X.Y.so and libpneumoscope_torch.so
 * beside this library. It must be built for the same major.minor and need only libtorch file names
 * the folder has. 0 and the plan, or -1 and why: both versions and the command that builds one. */
static int plan_torch_dir(const char *dir, const char *ver, const char *ver_from, const char *own_backend, load_plan *p,
                          char *why, size_t cap) {
  char lib[PATH_MAX], mm[32], cand[3][PATH_MAX + 64];
  int n = 0, a = 0, b = 0;
  ps__lib_folder(lib, sizeof lib);
  if (!lib[0]) fmt(lib, sizeof lib, "<the folder of libpneumoscope.so>/");
  if (version_mm(ver, &a, &b))
    fmt(mm, sizeof mm, "%d.%d", a, b);
  else
    fmt(mm, sizeof mm, "X.Y");
  if (own_backend) fmt(cand[n++], sizeof cand[0], "%s", own_backend);
  fmt(cand[n++], sizeof cand[0], "%slibpneumoscope_torch-%s.so", lib, mm);
  fmt(cand[n++], sizeof cand[0], "%s%s", lib, PS_TORCH_BACKEND_FILE);
  char seen[2048] = ""; /* "; <file> is built for libtorch <v>" per candidate that is not it */
  for (int i = 0; i < n; i++) {
    elf_dyn dyn;
    char bver[64] = "(an unknown version)";
    const char *missing = NULL;
    if (!is_file(cand[i])) continue;
    if (elf_read_dyn(cand[i], &dyn) != 0) {
      append(seen, sizeof seen, "; %s is not a shared library", cand[i]);
      continue;
    }
    int match = backend_torch_version(cand[i], &dyn, bver, sizeof bver) && same_mm(bver, ver);
    for (int k = 0; k < dyn.n_needed && !missing; k++) {
      char f[PATH_MAX + 160];
      fmt(f, sizeof f, "%s/%s", dir, dyn.needed[k]);
      if (is_torch_lib(dyn.needed[k]) && access(f, F_OK) != 0) missing = dyn.needed[k];
    }
    if (match && !missing) {
      fmt(p->backend, sizeof p->backend, "%s", cand[i]);
      fmt(p->torch_dir, sizeof p->torch_dir, "%s", dir);
      fmt(p->torch_version, sizeof p->torch_version, "%s", ver);
      return 0;
    }
    append(seen, sizeof seen, "; %s is built for libtorch %s%s%s", cand[i], bver, match ? " but needs " : "",
           match ? missing : ""); /* same version, another build */
  }
  char tdir[PATH_MAX];
  torch_cmake_dir(dir, tdir, sizeof tdir);
  if (!seen[0]) fmt(seen, sizeof seen, "; there is no PneumoScope libtorch backend in %s", lib);
  fmt(why, cap,
      "%s holds libtorch %s (%s)%s. Build a backend for libtorch %s: cmake -S <PneumoScope source> -B build-torch-%s "
      "-DCMAKE_BUILD_TYPE=Release -DTorch_DIR=%s -DPS_WITH_JAVA=OFF -DPS_WITH_TESTS=OFF && cmake --build "
      "build-torch-%s --target pneumoscope_torch, then copy build-torch-%s/%s to %slibpneumoscope_torch-%s.so",
      dir, ver, ver_from, seen, mm, mm, tdir, mm, mm, PS_TORCH_BACKEND_FILE, lib, mm);
  return -1;
}

/* Resolve a location (ps_torch_set_backend, $PNEUMOSCOPE_TORCH_BACKEND): 0 and the plan, or -1,
 * the status and why. Reads files only. */
static int plan_location(const char *loc, load_plan *p, int *status, char *why, size_t cap) {
  memset(p, 0, sizeof *p);
  struct stat st;
  if (stat(loc, &st) != 0) {
    *status = PS_ENOTFOUND;
    fmt(why, cap, "%s", strerror(errno));
    return -1;
  }
  if (!S_ISDIR(st.st_mode)) { /* the module itself: dlopen says what is wrong with it */
    fmt(p->backend, sizeof p->backend, "%s", loc);
    return 0;
  }
  char dir[PATH_MAX], own[PATH_MAX + 64], sub[PATH_MAX + 8];
  if (!realpath(loc, dir)) fmt(dir, sizeof dir, "%s", loc);
  fmt(sub, sizeof sub, "%s/lib", dir); /* site-packages/torch or a libtorch download's root */
  if (!is_torch_dir(dir) && is_torch_dir(sub)) fmt(dir, sizeof dir, "%s", sub);
  fmt(own, sizeof own, "%s/%s", dir, PS_TORCH_BACKEND_FILE);
  int has_own = is_file(own);
  if (!is_torch_dir(dir)) {
    if (has_own) {
      fmt(p->backend, sizeof p->backend, "%s", own);
      return 0;
    }
    *status = PS_ENOTFOUND;
    fmt(why, cap,
        "the folder holds neither %s nor libtorch (libtorch_cpu.so*, libc10.so*: PyTorch's site-packages/torch/lib, "
        "a libtorch download's lib, or Debian's /usr/lib/x86_64-linux-gnu with libtorch1.13 installed)",
        PS_TORCH_BACKEND_FILE);
    return -1;
  }
  char ver[64], from[PATH_MAX + 64];
  if (!torch_dir_version(dir, ver, sizeof ver, from, sizeof from)) {
    *status = PS_EUNSUPPORTED;
    fmt(why, cap,
        "%s holds libtorch but not its version (no ../version.py, ../build-version, "
        "TorchConfigVersion.cmake or versioned libtorch_cpu.so.X.Y)",
        dir);
    return -1;
  }
  if (plan_torch_dir(dir, ver, from, has_own ? own : NULL, p, why, cap) != 0) {
    *status = PS_EUNSUPPORTED;
    return -1;
  }
  return 0;
}

/* ---- libtorch in this process ---------------------------------------------------------------- */

typedef struct torch_scan {
  char first[PATH_MAX]; /* real path of the first libtorch_cpu mapped */
  int distinct;         /* how many different ones */
} torch_scan;

static int scan_one(struct dl_phdr_info *info, size_t size, void *data) {
  (void)size;
  torch_scan *s = data;
  const char *name = info->dlpi_name, *base;
  if (!name || !*name) return 0;
  base = strrchr(name, '/');
  base = base ? base + 1 : name;
  if (strncmp(base, "libtorch_cpu.so", 15) != 0) return 0;
  char real[PATH_MAX];
  if (!realpath(name, real)) fmt(real, sizeof real, "%s", name);
  if (!s->distinct) fmt(s->first, sizeof s->first, "%s", real);
  if (!s->distinct || strcmp(s->first, real) != 0) s->distinct++;
  return 0;
}

static void scan_torch(torch_scan *s) {
  memset(s, 0, sizeof *s);
  dl_iterate_phdr(scan_one, s);
}

/* 1 when the folder of file (a real path) is dir (resolved). */
static int file_in_dir(const char *file, const char *dir) {
  char rd[PATH_MAX];
  if (!realpath(dir, rd)) return 0;
  const char *slash = strrchr(file, '/');
  return slash && (size_t)(slash - file) == strlen(rd) && strncmp(file, rd, strlen(rd)) == 0;
}

/* Map the folder's libtorch libraries that the backend names, in dependency order (the backend's
 * DT_NEEDED then match them by soname). 0, or -1 with the error set. */
static int preload_torch(const load_plan *p) {
  torch_scan s;
  scan_torch(&s);
  if (s.distinct && !file_in_dir(s.first, p->torch_dir)) {
    char why[PATH_MAX * 2];
    fmt(why, sizeof why,
        "this process already has libtorch from %s; a second libtorch (from %s) cannot be loaded beside it", s.first,
        p->torch_dir);
    set_load_error(p->torch_dir, why);
    return -1;
  }
  elf_dyn dyn;
  if (elf_read_dyn(p->backend, &dyn) != 0) return 0; /* dlopen will say */
  for (int rank = 0; rank <= 4; rank++)
    for (int i = 0; i < dyn.n_needed; i++) {
      if (!is_torch_lib(dyn.needed[i]) || torch_lib_rank(dyn.needed[i]) != rank) continue;
      char f[PATH_MAX + 160];
      fmt(f, sizeof f, "%s/%s", p->torch_dir, dyn.needed[i]);
      if (!dlopen(f, RTLD_NOW | RTLD_LOCAL)) {
        set_load_error(p->torch_dir, dlerror());
        return -1;
      }
    }
  return 0;
}

/* dlopen a backend module and check its table; on success the backend is in use. */
static int open_backend(const char *path, const load_plan *plan) {
  if (plan && plan->torch_dir[0] && preload_torch(plan) != 0) return -1;
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    set_load_error(path, dlerror());
    return -1;
  }
  /* A module that fails the checks below stays mapped: unloading libtorch is not safe. */
  torch_scan s;
  scan_torch(&s);
  if (s.distinct > 1 || (plan && plan->torch_dir[0] && s.distinct && !file_in_dir(s.first, plan->torch_dir))) {
    char why[PATH_MAX + 256];
    fmt(why, sizeof why,
        "it brought a second libtorch into this process (%d libtorch_cpu mapped, the first %s): not used", s.distinct,
        s.first);
    set_load_error(path, why);
    return -1;
  }
  dlerror();
  ps_torch_backend_fn *get = (ps_torch_backend_fn *)dlsym(h, PS_TORCH_BACKEND_SYMBOL);
  if (!get) {
    set_load_error(path, "no " PS_TORCH_BACKEND_SYMBOL " in it (not a PneumoScope libtorch backend)");
    return -1;
  }
  const ps_torch_backend *b = get();
  if (!b || b->size != sizeof(ps_torch_backend)) {
    char why[256];
    fmt(why, sizeof why, "its function table has %u bytes, this library expects %u (built from another PneumoScope)",
        b ? (unsigned)b->size : 0u, (unsigned)sizeof(ps_torch_backend));
    set_load_error(path, why);
    return -1;
  }
  Dl_info info;
  char real[PATH_MAX];
  if (dladdr((const void *)b, &info) && info.dli_fname && realpath(info.dli_fname, real))
    fmt(g_backend_path, sizeof g_backend_path, "%s", real);
  else
    fmt(g_backend_path, sizeof g_backend_path, "%s", path);
  fmt(g_torch_dir, sizeof g_torch_dir, "%s", plan ? plan->torch_dir : "");
  pthread_mutex_lock(&g_threads_mu);
  if (g_threads > 0 && b->ps_torch_set_threads(g_threads) != PS_OK) g_threads_failed = g_threads;
  g_backend = b;
  atomic_store(&g_loaded, 1);
  pthread_mutex_unlock(&g_threads_mu);
  atomic_store(&g_log_pending, 1);
  return 0;
}

/* Step 5: a versioned backend beside this library whose libtorch the dynamic loader finds (a failed
 * dlopen maps nothing: glibc unloads what it loaded for it). why gets each try's reason. */
static int open_versioned_beside(const char *dir, char *why, size_t cap) {
  DIR *d = opendir(dir[0] ? dir : ".");
  if (!d) return -1;
  struct dirent *e;
  int st = -1;
  while (st != 0 && (e = readdir(d))) {
    size_t n = strlen(e->d_name);
    if (strncmp(e->d_name, "libpneumoscope_torch-", 21) != 0 || n < 4 || strcmp(e->d_name + n - 3, ".so") != 0)
      continue;
    char f[PATH_MAX + 256];
    fmt(f, sizeof f, "%s%s", dir, e->d_name);
    if (!dlopen(f, RTLD_NOW | RTLD_LOCAL)) {
      append(why, cap, "; %s: %s", e->d_name, dlerror());
      continue;
    }
    st = open_backend(f, NULL);
    if (st != 0) { /* it loaded but is unusable: its error stands */
      closedir(d);
      return 1;
    }
  }
  closedir(d);
  return st;
}

/* One try, under g_load_mu: g_state becomes LOAD_DONE or LOAD_FAILED. */
static void load_backend(void) {
  const char *env = getenv(PS_TORCH_BACKEND_ENV);
  const char *loc = g_location[0] ? g_location : env && *env ? env : NULL;
  char why[3072];
  int ok = -1;
  if (loc) {
    load_plan p;
    int status;
    if (plan_location(loc, &p, &status, why, sizeof why) != 0)
      set_load_error(loc, why);
    else
      ok = open_backend(p.backend, &p);
  } else {
    char dir[PATH_MAX], beside[PATH_MAX + 64];
    ps__lib_folder(dir, sizeof dir);
    fmt(beside, sizeof beside, "%s%s", dir, PS_TORCH_BACKEND_FILE);
    if (dir[0] && access(beside, F_OK) == 0) {
      /* The one built or installed with this library: its failure is the one to report. */
      ok = open_backend(beside, NULL);
    } else {
      void *h = dlopen(PS_TORCH_BACKEND_FILE, RTLD_NOW | RTLD_LOCAL);
      if (h)
        ok = open_backend(PS_TORCH_BACKEND_FILE, NULL);
      else {
        fmt(why, sizeof why, "not in %s and not on the library path (%s)", dir[0] ? dir : "this library's folder",
            dlerror());
        int v = dir[0] ? open_versioned_beside(dir, why, sizeof why) : -1;
        if (v == 0)
          ok = 0;
        else if (v < 0)
          set_load_error(PS_TORCH_BACKEND_FILE, why);
      }
    }
  }
  if (ok == 0) {
    g_state = LOAD_DONE;
    return;
  }
  g_state = LOAD_FAILED;
  torch_scan s;
  scan_torch(&s);
  g_stuck = s.distinct > 0;
  if (g_stuck) {
    append(g_load_error, sizeof g_load_error, " (libtorch %s stays mapped: restart to use another)", s.first);
  }
}

/* The backend, loading it on first use; NULL when it cannot be loaded. */
static const ps_torch_backend *backend(void) {
  if (atomic_load_explicit(&g_loaded, memory_order_acquire)) return g_backend;
  pthread_mutex_lock(&g_load_mu);
  if (g_state == LOAD_NOT_TRIED) load_backend();
  pthread_mutex_unlock(&g_load_mu);
  if (!atomic_load(&g_loaded)) return NULL;
  /* Logged outside the lock: a log callback that calls back into this API cannot deadlock. */
  if (atomic_exchange(&g_log_pending, 0)) {
    if (g_threads_failed) ps_log(PS_LOG_WARN, "torch: could not apply %d threads to libtorch", g_threads_failed);
    const char *v = g_backend->ps_torch_version();
    if (g_torch_dir[0]) {
      ps_log(PS_LOG_INFO, "torch: libtorch %s from %s (backend %s)", v, g_torch_dir, g_backend_path);
    } else {
      ps_log(PS_LOG_DEBUG, "torch: loaded %s (libtorch %s)", g_backend_path, v);
    }
  }
  return g_backend;
}

static int load_failed(void) {
  char msg[sizeof g_load_error];
  pthread_mutex_lock(&g_load_mu);
  fmt(msg, sizeof msg, "%s", g_load_error);
  pthread_mutex_unlock(&g_load_mu);
  return ps_error(PS_EUNSUPPORTED, "%s", msg);
}

int ps_torch_loaded(void) { return atomic_load(&g_loaded) ? 1 : 0; }

/* 1 when plan p names the loaded module with the libtorch already mapped (under g_load_mu). */
static int loaded_same(const load_plan *p) {
  char real[PATH_MAX];
  if (!realpath(p->backend, real) || strcmp(real, g_backend_path) != 0) return 0;
  if (!p->torch_dir[0]) return 1;
  torch_scan s;
  scan_torch(&s);
  return s.distinct == 1 && file_in_dir(s.first, p->torch_dir);
}

int ps_torch_set_backend(const char *location) {
  int have = location && *location;
  if (have && strlen(location) >= sizeof g_location) return ps_error(PS_EINVAL, "torch: backend location too long");
  load_plan p;
  int status = PS_OK, planned = 0;
  char why[3072];
  if (have) planned = plan_location(location, &p, &status, why, sizeof why) == 0;
  pthread_mutex_lock(&g_load_mu);
  if (g_state == LOAD_DONE) {
    /* Only the same module with the same libtorch: a second libtorch in one process is not safe. */
    int same = !have || (planned && loaded_same(&p));
    char loaded[PATH_MAX * 2 + 64];
    fmt(loaded, sizeof loaded, "%s%s%s", g_backend_path, g_torch_dir[0] ? " with libtorch from " : "", g_torch_dir);
    pthread_mutex_unlock(&g_load_mu);
    if (same) return PS_OK;
    return ps_error(PS_ESTATE,
                    "torch: the libtorch backend %s is already loaded in this process; %s would load another "
                    "libtorch beside it, which is not safe: restart the program to use it",
                    loaded, location);
  }
  if (g_state == LOAD_FAILED && g_stuck) {
    char msg[sizeof g_load_error];
    fmt(msg, sizeof msg, "%s", g_load_error);
    pthread_mutex_unlock(&g_load_mu);
    return ps_error(PS_ESTATE, "%s", msg);
  }
  if (have && !planned) {
    pthread_mutex_unlock(&g_load_mu);
    return ps_error(status, "torch: cannot load the libtorch backend %s: %s", location, why);
  }
  fmt(g_location, sizeof g_location, "%s", have ? location : "");
  g_state = LOAD_NOT_TRIED; /* tried again on the next use */
  pthread_mutex_unlock(&g_load_mu);
  return PS_OK;
}
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

