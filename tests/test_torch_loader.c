/* test_torch_loader.c — libtorch is loaded lazily (native/torch/loader.c).
 *
 *   test_torch_loader            (ctest torch_loader) in a fresh process: reading real films and
 *                                the calls that need no libtorch leave libtorch_cpu unmapped
 *                                (/proc/self/maps); the first tensor loads the backend from the
 *                                folder of libpneumoscope, which then runs with the thread count
 *                                set before (asked of libtorch itself: at::get_num_threads); the
 *                                module exports one symbol; `pneumoscope version` maps no libtorch.
 *   test_torch_loader missing    (ctest torch_loader_missing, PNEUMOSCOPE_TORCH_BACKEND=/nonexistent.so)
 *                                every kind of call fails cleanly with the path in the message,
 *                                repeated on later calls and other threads; the CLI reports it;
 *                                then ps_torch_set_backend(Debian's libtorch folder) wins over the
 *                                variable and the next call loads libtorch from that folder.
 *   test_torch_loader folder     (ctest torch_loader_folder) ps_torch_set_backend: a missing path,
 *                                a folder without libtorch, a PyTorch-like lib folder of another
 *                                version (2.3.1: the message names both versions and the cmake
 *                                command), another build of 1.13, a folder without a version, a
 *                                file that is no library: each refused or failing without mapping
 *                                any libtorch; backends made for pip's 2.2 and 2.3 (patchelf):
 *                                the version in their RUNPATH decides; then a folder holding
 *                                copies of Debian's libc10 / libtorch_cpu / libtorch is where
 *                                libtorch is mapped from (and only there), and naming another
 *                                libtorch afterwards is refused.
 *                                The CLI with PNEUMOSCOPE_TORCH_BACKEND naming a folder, and with
 *                                only libpneumoscope_torch-1.13.so beside libpneumoscope.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ps_image_io.h"
#include "ps_torch.h"
#include "test_util.h"

#define MISSING_BACKEND "/nonexistent.so"
#define DEBIAN_TORCH "/usr/lib/x86_64-linux-gnu"

static int g_want_threads;

static void assert_ok(int st, const char *what) {
  if (st != PS_OK) fail_msg("%s: %s: %s", what, ps_strerror(st), ps_last_error());
}

/* The first line of /proc/self/maps naming a file that contains `needle`: its path (static), or NULL. */
static const char *mapped(const char *needle) {
  static char path[4096];
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f) fail_msg("cannot read /proc/self/maps");
  char line[8192];
  const char *found = NULL;
  while (fgets(line, sizeof line, f)) {
    char *p = strchr(line, '/');
    if (!p || !strstr(p, needle)) continue;
    p[strcspn(p, "\n")] = 0;
    snprintf(path, sizeof path, "%s", p);
    found = path;
    break;
  }
  fclose(f);
  return found;
}

/* Real path of the object that holds address p (static buffer). */
static const char *object_of(void *p) {
  static char path[2][4096];
  static int slot;
  Dl_info info;
  if (!dladdr(p, &info) || !info.dli_fname) fail_msg("dladdr(%p) failed", p);
  char *out = path[slot++ & 1];
  if (!realpath(info.dli_fname, out)) snprintf(out, 4096, "%s", info.dli_fname);
  return out;
}

static int cuda_build(void) { return strstr(ps_build_features(), "cuda") != NULL; }

static void read_film(const char *rel) {
  ps_image *img = NULL;
  assert_ok(ps_image_read(ps_test_data(rel), NULL, &img), rel);
  assert_true(img->width > 0 && img->height > 0);
  ps_image_free(img);
}

/* (a) before: films, dtype helpers, threads, CPU device, frees of NULL load nothing. */
static void test_no_libtorch_until_needed(void **state) {
  (void)state;
  assert_null(mapped("libtorch_cpu"));
  assert_int_equal(ps_torch_loaded(), 0);

  read_film("dicom/gcp_dicom_00000001_000.dcm");
  read_film("png/nih_00000001_000.png");
  read_film("kaggle/NORMAL/IM-0117-0001.jpeg");

  assert_int_equal(ps_dtype_size(PS_DTYPE_F32), sizeof(float));
  assert_int_equal(ps_dtype_size(PS_DTYPE_I64), sizeof(int64_t));
  assert_int_equal(ps_dtype_size(PS_DTYPE_OTHER), 0);
  assert_string_equal(ps_dtype_name(PS_DTYPE_BF16), "BF16");

  /* A count libtorch would not pick by itself (ps_default_threads() is what it gets otherwise). */
  g_want_threads = ps_default_threads() + 1;
  assert_int_equal(ps_torch_get_threads(), ps_default_threads());
  assert_ok(ps_torch_set_threads(g_want_threads), "set_threads before load");
  assert_int_equal(ps_torch_get_threads(), g_want_threads);
  assert_int_equal(ps_torch_set_threads(-1), PS_EINVAL);
  assert_non_null(strstr(ps_last_error(), "thread count"));

  ps_device d = PS_DEVICE_CUDA;
  assert_ok(ps_torch_resolve_device(PS_DEVICE_CPU, &d), "resolve cpu");
  assert_int_equal(d, PS_DEVICE_CPU);
  assert_int_equal(ps_torch_resolve_device((ps_device)7, &d), PS_EINVAL);
  assert_int_equal(ps_torch_resolve_device(PS_DEVICE_CPU, NULL), PS_EINVAL);
  ps_tensor_free(NULL);
  ps_adam_free(NULL);

  if (!cuda_build()) {
    /* libtorch without CUDA: the answers are known at build time. */
    assert_int_equal(ps_torch_cuda_available(), 0);
    assert_ok(ps_torch_resolve_device(PS_DEVICE_AUTO, &d), "resolve auto");
    assert_int_equal(d, PS_DEVICE_CPU);
    assert_int_equal(ps_torch_resolve_device(PS_DEVICE_CUDA, &d), PS_EUNSUPPORTED);
    assert_non_null(strstr(ps_last_error(), "CUDA requested but not available"));
  } else {
    print_message("note: CUDA build: AUTO/CUDA requests ask the backend (not checked before loading)\n");
  }

  assert_null(mapped("libtorch_cpu"));
  assert_null(mapped("libpneumoscope_torch"));
  assert_int_equal(ps_torch_loaded(), 0);
}

/* (a) after: the first tensor maps libtorch; the remembered thread count is libtorch's. */
static void test_first_tensor_loads_backend(void **state) {
  (void)state;
  assert_int_equal(ps_torch_loaded(), 0);
  int64_t shape[2] = {2, 3};
  ps_tensor *t = NULL;
  assert_ok(ps_tensor_zeros(&t, shape, 2, PS_DTYPE_F32, PS_DEVICE_CPU), "zeros");
  assert_int_equal(ps_torch_loaded(), 1);
  assert_int_equal(ps_tensor_numel(t), 6);
  assert_int_equal(ps_tensor_dtype(t), PS_DTYPE_F32);

  const char *torch_cpu = mapped("libtorch_cpu");
  assert_non_null(torch_cpu);
  char torch_cpu_path[4096];
  snprintf(torch_cpu_path, sizeof torch_cpu_path, "%s", torch_cpu);

  /* Loaded from the folder of libpneumoscope (the build folder here). */
  const char *core = mapped("libpneumoscope.so");
  assert_non_null(core);
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", core);
  *strrchr(dir, '/') = 0;
  const char *module = mapped("libpneumoscope_torch.so");
  assert_non_null(module);
  char want_module[4200];
  snprintf(want_module, sizeof want_module, "%s/libpneumoscope_torch.so", dir);
  assert_string_equal(module, want_module);

  /* The count set before loading, as the wrapper reports it and as libtorch itself does. */
  assert_int_equal(ps_torch_get_threads(), g_want_threads);
  void *h = dlopen(torch_cpu_path, RTLD_NOW | RTLD_NOLOAD);
  if (!h) fail_msg("dlopen(RTLD_NOLOAD) of the mapped %s: %s", torch_cpu_path, dlerror());
  int (*at_get_num_threads)(void) = (int (*)(void))dlsym(h, "_ZN2at15get_num_threadsEv");
  if (!at_get_num_threads) fail_msg("at::get_num_threads not found in %s", torch_cpu_path);
  assert_int_equal(at_get_num_threads(), g_want_threads);
  /* After the load set_threads forwards. */
  assert_ok(ps_torch_set_threads(1), "set_threads after load");
  assert_int_equal(at_get_num_threads(), 1);
  assert_int_equal(ps_torch_get_threads(), 1);
  assert_ok(ps_torch_set_threads(g_want_threads), "set_threads after load");
  assert_int_equal(at_get_num_threads(), g_want_threads);
  dlclose(h);

  /* The module exports its table only: its functions cannot interpose libpneumoscope's stubs. */
  void *m = dlopen(want_module, RTLD_NOW | RTLD_NOLOAD);
  if (!m) fail_msg("dlopen(RTLD_NOLOAD) %s: %s", want_module, dlerror());
  void *table = dlsym(m, "ps_torch_backend_v1");
  assert_non_null(table);
  assert_string_equal(object_of(table), want_module);
  /* dlsym on the module's handle also searches its dependencies (libpneumoscope): the names
   * resolve, but to libpneumoscope's stubs, never into the module. */
  const char *names[] = {"ps_tensor_zeros", "ps_op_relu", "ps_torch_set_threads", "ps_tensor_free"};
  for (int i = 0; i < 4; i++) {
    void *p = dlsym(m, names[i]);
    assert_non_null(p);
    if (strcmp(object_of(p), want_module) == 0) fail_msg("%s is exported by %s", names[i], want_module);
    assert_string_equal(object_of(p), object_of((void *)&ps_tensor_zeros));
  }
  dlclose(m);

  /* Forwarding through the table: a copy round trip and the version string. */
  float in[6] = {1, -2, 3, -4, 5, -6}, out[6] = {0};
  ps_tensor *x = NULL, *y = NULL;
  assert_ok(ps_tensor_from_f32(&x, in, shape, 2, PS_DEVICE_CPU), "from_f32");
  assert_ok(ps_op_relu(&y, x), "relu");
  assert_ok(ps_tensor_to_f32(y, out, 6), "to_f32");
  for (int i = 0; i < 6; i++) assert_true(out[i] == (in[i] > 0 ? in[i] : 0));
  assert_true(ps_torch_version()[0] >= '1' && ps_torch_version()[0] <= '9');
  assert_int_equal(ps_torch_cuda_available(), cuda_build() ? ps_torch_cuda_available() : 0);
  ps_tensor_free(y);
  ps_tensor_free(x);
  ps_tensor_free(t);
}

/* `pneumoscope version` does not map libtorch (the dynamic loader's own list of files). */
static void test_cli_version_without_libtorch(void **state) {
  (void)state;
  int status = -1;
  char *out = ps_test_capture(&status, "LD_DEBUG=files '%s' version 2>&1", PS_CLI);
  assert_non_null(out);
  if (status != 0) fail_msg("pneumoscope version: exit %d\n%s", status, out);
  assert_non_null(strstr(out, "file=libpneumoscope.so")); /* LD_DEBUG did report the loads */
  if (strstr(out, "libtorch")) fail_msg("pneumoscope version loaded libtorch:\n%.2000s", out);
  free(out);
}

/* ---- (b) PNEUMOSCOPE_TORCH_BACKEND=/nonexistent.so ------------------------------------------- */

static char g_first_error[2048];

static void *thread_call(void *arg) {
  (void)arg;
  ps_tensor *t = (ps_tensor *)&g_first_error; /* a stale value that must be cleared */
  int64_t shape[1] = {4};
  int st = ps_tensor_zeros(&t, shape, 1, PS_DTYPE_F32, PS_DEVICE_CPU);
  static char msg[2048];
  snprintf(msg, sizeof msg, "%d|%s|%s", st, t ? "handle" : "null", ps_last_error());
  return msg;
}

static void test_missing_backend_fails_cleanly(void **state) {
  (void)state;
  const char *env = getenv("PNEUMOSCOPE_TORCH_BACKEND");
  if (!env || strcmp(env, MISSING_BACKEND) != 0)
    fail_msg("run with PNEUMOSCOPE_TORCH_BACKEND=" MISSING_BACKEND " (ctest torch_loader_missing sets it)");

  /* Remembered, no load attempted. */
  assert_ok(ps_torch_set_threads(3), "set_threads");
  assert_int_equal(ps_torch_get_threads(), 3);

  ps_tensor *t = (ps_tensor *)&g_first_error;
  int64_t shape[2] = {2, 2};
  assert_int_equal(ps_tensor_zeros(&t, shape, 2, PS_DTYPE_F32, PS_DEVICE_CPU), PS_EUNSUPPORTED);
  assert_null(t);
  snprintf(g_first_error, sizeof g_first_error, "%s", ps_last_error());
  print_message("message: %s\n", g_first_error);
  assert_non_null(strstr(g_first_error, "torch: cannot load the libtorch backend " MISSING_BACKEND ": "));
  assert_non_null(strstr(g_first_error, "No such file")); /* dlerror's reason */

  /* Later calls of every kind repeat the first failure. */
  ps_clear_error();
  ps_tensor *y = (ps_tensor *)&g_first_error;
  assert_int_equal(ps_op_relu(&y, NULL), PS_EUNSUPPORTED);
  assert_null(y);
  assert_string_equal(ps_last_error(), g_first_error);
  ps_clear_error();
  assert_int_equal(ps_torch_manual_seed(1), PS_EUNSUPPORTED);
  assert_string_equal(ps_last_error(), g_first_error);
  ps_clear_error();
  const char *v = ps_torch_version();
  assert_non_null(v);
  assert_string_equal(v, "");
  assert_string_equal(ps_last_error(), g_first_error);
  assert_non_null(ps_torch_config());
  assert_int_equal(ps_tensor_numel(NULL), 0);
  assert_int_equal(ps_tensor_size(NULL, 0), -1);
  assert_int_equal(ps_tensor_dtype(NULL), PS_DTYPE_OTHER);
  assert_int_equal(ps_torch_grad_enabled(), 0);
  assert_true(ps_adam_get_lr(NULL) == 0.0);
  void *buf = &g_first_error;
  size_t len = 7;
  assert_int_equal(ps_adam_save(NULL, &buf, &len), PS_EUNSUPPORTED);
  assert_null(buf);
  assert_int_equal(len, 0);
  ps_tensor_free(NULL);
  if (!cuda_build()) assert_int_equal(ps_torch_cuda_available(), 0);
  ps_device d = PS_DEVICE_CUDA;
  assert_ok(ps_torch_resolve_device(PS_DEVICE_CPU, &d), "resolve cpu without a backend");
  assert_int_equal(d, PS_DEVICE_CPU);

  /* Another thread gets the same status and text (the error detail is per thread). */
  pthread_t th;
  void *res = NULL;
  assert_int_equal(pthread_create(&th, NULL, thread_call, NULL), 0);
  assert_int_equal(pthread_join(th, &res), 0);
  char want[2200];
  snprintf(want, sizeof want, "%d|null|%s", PS_EUNSUPPORTED, g_first_error);
  assert_string_equal((const char *)res, want);

  assert_int_equal(ps_torch_loaded(), 0);
  assert_int_equal(ps_torch_get_threads(), 3);
  assert_null(mapped("libtorch_cpu"));
}

/* The CLI (same environment) reports it for a command that needs libtorch (Grad-CAM at layer3),
 * and exits normally; layer4 CAM runs on the C engine and needs no backend. */
static void test_missing_backend_cli(void **state) {
  (void)state;
  int status = -1;
  char *out = ps_test_capture(&status, "'%s' gradcam --model '%s' --json --layer layer3 '%s' 2>&1", PS_CLI,
                              ps_test_src("sample_data/models/pneumoscope-binary.safetensors"),
                              ps_test_data("png/nih_00000001_000.png"));
  assert_non_null(out);
  print_message("pneumoscope gradcam --layer layer3: exit %d: %s", status, out);
  assert_true(status > 0 && status < 128); /* an error exit, not a signal */
  assert_non_null(strstr(out, "cannot load the libtorch backend " MISSING_BACKEND));
  free(out);
  out = ps_test_capture(&status, "'%s' gradcam --model '%s' --json '%s' 2>&1", PS_CLI,
                        ps_test_src("sample_data/models/pneumoscope-binary.safetensors"),
                        ps_test_data("png/nih_00000001_000.png"));
  assert_non_null(out);
  print_message("pneumoscope gradcam (layer4): exit %d\n", status);
  assert_int_equal(status, 0);
  assert_non_null(strstr(out, "\"method\": \"cam\""));
  free(out);
}

/* After the failure above (nothing mapped), naming Debian's libtorch folder wins over the variable
 * and the next call loads libtorch from it: what Train Model's libtorch field does in Fiji. */
static void test_missing_then_debian_folder(void **state) {
  (void)state;
  if (access(DEBIAN_TORCH "/libtorch_cpu.so.1.13", F_OK) != 0) skip();
  assert_int_equal(ps_torch_loaded(), 0);
  assert_ok(ps_torch_set_backend(DEBIAN_TORCH), "set_backend(Debian's libtorch folder)");
  ps_tensor *t = NULL;
  int64_t shape[1] = {3};
  assert_ok(ps_tensor_zeros(&t, shape, 1, PS_DTYPE_F32, PS_DEVICE_CPU), "zeros after naming the folder");
  assert_int_equal(ps_torch_loaded(), 1);
  const char *cpu = mapped("libtorch_cpu");
  assert_non_null(cpu);
  assert_true(strncmp(cpu, DEBIAN_TORCH "/", strlen(DEBIAN_TORCH) + 1) == 0);
  assert_int_equal(ps_torch_get_threads(), 3); /* the count set before the failed load */
  ps_tensor_free(t);
  assert_ok(ps_torch_set_backend(DEBIAN_TORCH), "the same folder again");
}

/* ---- (c) ps_torch_set_backend with folders ------------------------------------------------- */

static char g_tmp[PATH_MAX];

static void write_file(const char *dir, const char *name, const char *text) {
  char *p = ps_test_join(dir, name);
  FILE *f = fopen(p, "w");
  if (!f) fail_msg("cannot write %s", p);
  fputs(text, f);
  fclose(f);
  free(p);
}

static char *make_dir(const char *rel) {
  char *p = ps_test_join(g_tmp, rel);
  if (ps_test_system("mkdir -p '%s'", p) != 0) fail_msg("mkdir -p %s", p);
  return p;
}

/* A PyTorch-like torch/ folder: lib/ with (empty) libraries under the given names, version.py. */
static char *fake_torch(const char *rel, const char *version, const char *const *libs, int n) {
  char *top = make_dir(rel), *lib = ps_test_join(top, "lib"), *cm = ps_test_join(top, "share/cmake/Torch");
  char text[128];
  ps_test_system("mkdir -p '%s' '%s'", lib, cm);
  for (int i = 0; i < n; i++) write_file(lib, libs[i], "");
  if (version) {
    snprintf(text, sizeof text, "__version__ = '%s'\ngit_version = 'abc'\n", version);
    write_file(top, "version.py", text);
  }
  free(cm);
  free(top);
  return lib;
}

static void expect_refused(const char *where, int want, const char *const *needles, int n) {
  int st = ps_torch_set_backend(where);
  const char *msg = ps_last_error();
  print_message("set_backend(%s): %s: %s\n", where, ps_strerror(st), msg);
  if (st != want) fail_msg("set_backend(%s): want %s, got %s: %s", where, ps_strerror(want), ps_strerror(st), msg);
  char prefix[PATH_MAX + 64];
  snprintf(prefix, sizeof prefix, "torch: cannot load the libtorch backend %s: ", where);
  if (strncmp(msg, prefix, strlen(prefix)) != 0) fail_msg("message does not start with '%s': %s", prefix, msg);
  for (int i = 0; i < n; i++)
    if (!strstr(msg, needles[i])) fail_msg("'%s' not in: %s", needles[i], msg);
  assert_int_equal(ps_torch_loaded(), 0);
  assert_null(mapped("libtorch_cpu"));
  assert_null(mapped("libc10"));
}

/* The next call that needs libtorch fails cleanly (handle cleared) and leaves no libtorch mapped. */
static void expect_load_fails(const char *what) {
  ps_tensor *t = (ps_tensor *)&g_tmp;
  int64_t shape[1] = {2};
  assert_int_equal(ps_tensor_zeros(&t, shape, 1, PS_DTYPE_F32, PS_DEVICE_CPU), PS_EUNSUPPORTED);
  assert_null(t);
  print_message("%s: %s\n", what, ps_last_error());
  assert_null(mapped("libtorch_cpu"));
  assert_null(mapped("libc10"));
  assert_int_equal(ps_torch_loaded(), 0);
}

static void test_folder_refused(void **state) {
  (void)state;
  if (!realpath(ps_test_tmpdir(), g_tmp)) fail_msg("realpath of the temp folder");
  assert_int_equal(ps_torch_loaded(), 0);

  const char *nofile[] = {"No such file"};
  expect_refused("/nonexistent-pneumoscope-folder", PS_ENOTFOUND, nofile, 1);

  char *empty = make_dir("empty");
  const char *neither[] = {"holds neither libpneumoscope_torch.so nor libtorch", "site-packages/torch/lib"};
  expect_refused(empty, PS_ENOTFOUND, neither, 2);

  /* pip's torch 2.3 (unversioned sonames): the backend here is built for Debian's 1.13 */
  const char *pip_libs[] = {"libc10.so", "libtorch_cpu.so", "libtorch.so"};
  char *pip23 = fake_torch("pip23/torch", "2.3.1+cpu", pip_libs, 3);
  char want_cmake[PATH_MAX + 64];
  snprintf(want_cmake, sizeof want_cmake, "-DTorch_DIR=%s/pip23/torch/share/cmake/Torch ", g_tmp);
  const char *versions[] = {"holds libtorch 2.3.1+cpu (",
                            "version.py)",
                            "is built for libtorch 1.13",
                            want_cmake,
                            "cmake --build build-torch-2.3 --target pneumoscope_torch",
                            "libpneumoscope_torch-2.3.so"};
  expect_refused(pip23, PS_EUNSUPPORTED, versions, 6);
  char *pip23_top = make_dir("pip23/torch"); /* the folder above lib/ is taken too */
  expect_refused(pip23_top, PS_EUNSUPPORTED, versions, 6);

  /* the same version from another build (unversioned sonames): Debian's backend would pull
   * Debian's libtorch in beside it, so it is not used */
  char *pip113 = fake_torch("pip113/torch", "1.13.1", pip_libs, 3);
  const char *other_build[] = {"holds libtorch 1.13.1", "is built for libtorch 1.13 but needs libc10.so.1.13",
                               "--target pneumoscope_torch"};
  expect_refused(pip113, PS_EUNSUPPORTED, other_build, 3);

  char *nover = fake_torch("nover", NULL, pip_libs, 3);
  const char *noversion[] = {"holds libtorch but not its version"};
  expect_refused(nover, PS_EUNSUPPORTED, noversion, 1);

  /* a file that is no library: accepted by name (the file itself), its load fails, maps nothing,
   * and naming another location afterwards is allowed again */
  write_file(g_tmp, "notelf.so", "not a shared library\n");
  char *notelf = ps_test_join(g_tmp, "notelf.so");
  assert_ok(ps_torch_set_backend(notelf), "set_backend(a file)");
  expect_load_fails("a file that is no library");
  assert_non_null(strstr(ps_last_error(), "cannot load the libtorch backend"));
  assert_non_null(strstr(ps_last_error(), "notelf.so"));
  assert_ok(ps_torch_set_backend(NULL), "back to the usual search after a failure that mapped nothing");
  free(notelf);
  free(nover);
  free(pip113);
  free(pip23_top);
  free(pip23);
  free(empty);
}

/* Backends built against a pip torch (unversioned libtorch sonames; their version is that of the
 * libtorch folder in their RUNPATH), made from this build's by patchelf, as a torch folder's own
 * libpneumoscope_torch.so: one built for 2.2 is refused for a 2.3 folder; one built for 2.3 is
 * accepted (nothing loaded yet), and its load then fails on the folder's fake libc10 without
 * leaving anything mapped, so another location can still be named. */
static void test_folder_pip_backend(void **state) {
  (void)state;
  if (ps_test_system("command -v patchelf > /dev/null") != 0) {
    print_message("SKIP: patchelf not installed (apt-get install patchelf)\n");
    skip();
  }
  const char *pip_libs[] = {"libc10.so", "libtorch_cpu.so", "libtorch.so"};
  char *lib22 = fake_torch("pip22/torch", "2.2.0", pip_libs, 3),
       *lib23 = fake_torch("own23/torch", "2.3.1", pip_libs, 3);
  const char *set[2] = {lib22, lib23};
  for (int i = 0; i < 2; i++) {
    assert_int_equal(
        ps_test_system("cp '%s/libpneumoscope_torch.so' '%s/libpneumoscope_torch.so' && patchelf "
                       "--replace-needed libc10.so.1.13 libc10.so --replace-needed libtorch_cpu.so.1.13 "
                       "libtorch_cpu.so --replace-needed libtorch.so.1.13 libtorch.so '%s/libpneumoscope_torch.so' && "
                       "patchelf --set-rpath '%s' '%s/libpneumoscope_torch.so'", /* one call mixes them up */
                       PS_BINARY_DIR, lib23, lib23, set[i], lib23),
        0);
    if (i == 0) {
      char own[PATH_MAX + 64];
      snprintf(own, sizeof own, "%s/libpneumoscope_torch.so is built for libtorch 2.2.0", lib23);
      const char *older[] = {"holds libtorch 2.3.1 (", own, "cmake --build build-torch-2.3 --target pneumoscope_torch"};
      expect_refused(lib23, PS_EUNSUPPORTED, older, 3);
    }
  }
  assert_ok(ps_torch_set_backend(lib23), "set_backend(a folder whose own backend is built for its 2.3)");
  expect_load_fails("its load");
  char want[PATH_MAX + 64];
  snprintf(want, sizeof want, "cannot load the libtorch backend %s: %s/libc10.so", lib23, lib23);
  assert_non_null(strstr(ps_last_error(), want));
  assert_ok(ps_torch_set_backend(NULL), "back to the usual search");
  free(lib23);
  free(lib22);
}

static char g_log[8192];
static void capture_log(ps_log_level level, const char *msg, void *user) {
  (void)level;
  (void)user;
  size_t n = strlen(g_log);
  snprintf(g_log + n, sizeof g_log - n, "%s\n", msg);
}

/* Copies (hard links where allowed) of Debian's libtorch in a folder of their own: naming it maps
 * libtorch from there and from nowhere else. */
static void test_folder_copy_is_the_libtorch(void **state) {
  (void)state;
  if (access(DEBIAN_TORCH "/libtorch_cpu.so.1.13", F_OK) != 0) skip();
  char *own = make_dir("own-libtorch");
  const char *libs[] = {"libc10.so.1.13", "libtorch_cpu.so.1.13", "libtorch.so.1.13"};
  for (int i = 0; i < 3; i++) {
    char src[PATH_MAX + 64], real[PATH_MAX];
    snprintf(src, sizeof src, DEBIAN_TORCH "/%s", libs[i]);
    if (!realpath(src, real)) fail_msg("realpath %s", src);
    char *dst = ps_test_join(own, libs[i]);
    if (link(real, dst) != 0 && ps_test_system("cp '%s' '%s'", real, dst) != 0) fail_msg("cannot copy %s", real);
    free(dst);
  }
  assert_ok(ps_torch_set_backend(own), "set_backend(a folder with libtorch 1.13)");
  assert_int_equal(ps_torch_loaded(), 0);
  assert_null(mapped("libtorch_cpu"));

  ps_log_set(capture_log, NULL);
  ps_tensor *x = NULL, *y = NULL;
  int64_t shape[1] = {4};
  float in[4] = {-1, 2, -3, 4}, out[4];
  assert_ok(ps_tensor_from_f32(&x, in, shape, 1, PS_DEVICE_CPU), "from_f32");
  assert_ok(ps_op_relu(&y, x), "relu");
  assert_ok(ps_tensor_to_f32(y, out, 4), "to_f32");
  for (int i = 0; i < 4; i++) assert_true(out[i] == (in[i] > 0 ? in[i] : 0));
  ps_log_set(NULL, NULL);
  print_message("log: %s", g_log);
  char want_log[PATH_MAX + 64];
  snprintf(want_log, sizeof want_log, "from %s (backend ", own);
  assert_non_null(strstr(g_log, want_log));

  /* every libc10 / libtorch_cpu mapping is the folder's */
  FILE *f = fopen("/proc/self/maps", "r");
  assert_non_null(f);
  char line[8192];
  int n_cpu = 0;
  while (fgets(line, sizeof line, f)) {
    char *p = strchr(line, '/');
    if (!p || (!strstr(p, "/libtorch_cpu.so") && !strstr(p, "/libc10.so") && !strstr(p, "/libtorch.so"))) continue;
    p[strcspn(p, "\n")] = 0;
    if (strncmp(p, own, strlen(own)) != 0) fail_msg("libtorch mapped from outside %s: %s", own, p);
    n_cpu += strstr(p, "libtorch_cpu") != NULL;
  }
  fclose(f);
  assert_true(n_cpu > 0);

  /* the same folder again, or the usual search: fine; another libtorch: refused */
  assert_ok(ps_torch_set_backend(own), "the same folder again");
  assert_ok(ps_torch_set_backend(""), "empty");
  assert_int_equal(ps_torch_set_backend(DEBIAN_TORCH), PS_ESTATE);
  print_message("another libtorch after loading: %s\n", ps_last_error());
  assert_non_null(strstr(ps_last_error(), "is already loaded in this process"));
  assert_non_null(strstr(ps_last_error(), DEBIAN_TORCH));
  char *pip23 = ps_test_join(g_tmp, "pip23/torch/lib");
  assert_int_equal(ps_torch_set_backend(pip23), PS_ESTATE);
  free(pip23);
  ps_tensor_free(y);
  ps_tensor_free(x);
  free(own);
}

/* The CLI: PNEUMOSCOPE_TORCH_BACKEND naming folders; and, with no variable, a libpneumoscope whose
 * folder holds only libpneumoscope_torch-1.13.so (the Fiji archive's layout) finds Debian's libtorch. */
static void test_folder_cli(void **state) {
  (void)state;
  const char *model = ps_test_src("sample_data/models/pneumoscope-binary.safetensors");
  char film[PATH_MAX];
  snprintf(film, sizeof film, "%s", ps_test_data("png/nih_00000001_000.png"));
  int status = -1;
  char *out = ps_test_capture(
      &status,
      "PNEUMOSCOPE_TORCH_BACKEND='%s/pip23/torch/lib' '%s' gradcam --model '%s' --json --layer layer3 '%s' 2>&1", g_tmp,
      PS_CLI, model, film);
  assert_non_null(out);
  print_message("CLI, variable naming a libtorch 2.3 folder: exit %d: %s", status, out);
  assert_true(status > 0 && status < 128);
  assert_non_null(strstr(out, "holds libtorch 2.3.1+cpu"));
  assert_non_null(strstr(out, "is built for libtorch 1.13"));
  assert_non_null(strstr(out, "--target pneumoscope_torch"));
  free(out);
  if (access(DEBIAN_TORCH "/libtorch_cpu.so.1.13", F_OK) != 0) skip();
  out = ps_test_capture(
      &status, "PNEUMOSCOPE_TORCH_BACKEND=" DEBIAN_TORCH " '%s' gradcam --model '%s' --json --layer layer3 '%s' 2>&1",
      PS_CLI, model, film);
  assert_non_null(out);
  if (status != 0) fail_msg("CLI, variable naming Debian's libtorch folder: exit %d: %s", status, out);
  assert_non_null(strstr(out, "\"layer\": \"layer3\""));
  free(out);

  /* only the versioned backend beside libpneumoscope (LD_LIBRARY_PATH comes before the CLI's RUNPATH) */
  char *solo = make_dir("versioned-only");
  char lib[PATH_MAX + 32], real[PATH_MAX];
  snprintf(lib, sizeof lib, "%s/libpneumoscope.so.0", PS_BINARY_DIR);
  if (!realpath(lib, real)) fail_msg("realpath %s", lib);
  assert_int_equal(ps_test_system("cp '%s' '%s/libpneumoscope.so.0' && cp '%s/libpneumoscope_torch.so' "
                                  "'%s/libpneumoscope_torch-1.13.so'",
                                  real, solo, PS_BINARY_DIR, solo),
                   0);
  out = ps_test_capture(&status,
                        "env -u PNEUMOSCOPE_TORCH_BACKEND LD_LIBRARY_PATH='%s' LD_DEBUG=files '%s' gradcam "
                        "--model '%s' --json --layer layer3 '%s' 2>&1",
                        solo, PS_CLI, model, film);
  assert_non_null(out);
  char want[PATH_MAX + 64];
  snprintf(want, sizeof want, "file=%s/libpneumoscope_torch-1.13.so", solo);
  if (status != 0 || !strstr(out, want) || !strstr(out, "\"layer\": \"layer3\""))
    fail_msg("CLI with only %s/libpneumoscope_torch-1.13.so: exit %d, '%s' %s in its LD_DEBUG output:\n%.3000s", solo,
             status, want, strstr(out, want) ? "found" : "not found", out);
  print_message("CLI with only libpneumoscope_torch-1.13.so beside libpneumoscope: loaded it, layer3 Grad-CAM ok\n");
  free(out);
  free(solo);
}
int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "missing") == 0) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_backend_fails_cleanly),
        cmocka_unit_test(test_missing_backend_cli),
        cmocka_unit_test(test_missing_then_debian_folder),
    };
    return cmocka_run_group_tests_name("torch_loader_missing", tests, NULL, NULL);
  }
  if (argc > 1 && strcmp(argv[1], "folder") == 0) {
    /* Order matters: refusals before anything is loaded, then the load, then the CLI. */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_folder_refused),
        cmocka_unit_test(test_folder_pip_backend),
        cmocka_unit_test(test_folder_copy_is_the_libtorch),
        cmocka_unit_test(test_folder_cli),
    };
    return cmocka_run_group_tests_name("torch_loader_folder", tests, NULL, NULL);
  }
  /* Order matters: one fresh process, nothing loaded before the first test. */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_no_libtorch_until_needed),
      cmocka_unit_test(test_first_tensor_loads_backend),
      cmocka_unit_test(test_cli_version_without_libtorch),
  };
  return cmocka_run_group_tests_name("torch_loader", tests, NULL, NULL);
}
