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
 *                                repeated on later calls and other threads; the CLI reports it.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_image_io.h"
#include "ps_torch.h"
#include "test_util.h"

#define MISSING_BACKEND "/nonexistent.so"

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

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "missing") == 0) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_backend_fails_cleanly),
        cmocka_unit_test(test_missing_backend_cli),
    };
    return cmocka_run_group_tests_name("torch_loader_missing", tests, NULL, NULL);
  }
  /* Order matters: one fresh process, nothing loaded before the first test. */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_no_libtorch_until_needed),
      cmocka_unit_test(test_first_tensor_loads_backend),
      cmocka_unit_test(test_cli_version_without_libtorch),
  };
  return cmocka_run_group_tests_name("torch_loader", tests, NULL, NULL);
}
