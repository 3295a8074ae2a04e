/* Core: status text, thread-local error detail, image allocation limits. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ps_image.h"
#include "test_util.h"

static void test_error_detail_is_per_thread(void **state) {
  (void)state;
  assert_int_equal(ps_error(PS_EFORMAT, "dicom: short pixel data in %s", "a.dcm"), PS_EFORMAT);
  assert_string_equal(ps_last_error(), "dicom: short pixel data in a.dcm");
  assert_string_equal(ps_strerror(PS_EFORMAT), "malformed file");
  ps_clear_error();
  assert_string_equal(ps_last_error(), "");
}

static void *other_thread(void *arg) {
  (void)arg;
  ps_error(PS_EIO, "other thread");
  return NULL;
}

static void test_error_not_shared_between_threads(void **state) {
  (void)state;
  ps_error(PS_EINVAL, "main thread");
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, other_thread, NULL), 0);
  pthread_join(t, NULL);
  assert_string_equal(ps_last_error(), "main thread");
}

static void test_image_create_rejects_bad_sizes(void **state) {
  (void)state;
  ps_image *img = (ps_image *)0x1;
  assert_int_equal(ps_image_create(0, 10, &img), PS_EINVAL);
  assert_null(img);
  assert_int_equal(ps_image_create(10, -1, &img), PS_EINVAL);
  assert_int_equal(ps_image_create(3, 2, &img), PS_OK);
  assert_int_equal(img->width, 3);
  assert_int_equal(img->height, 2);
  for (int i = 0; i < 6; i++) assert_true(img->data[i] == 0.0f);
  img->data[5] = 0.25f;
  ps_image *copy = NULL;
  assert_int_equal(ps_image_clone(img, &copy), PS_OK);
  assert_ptr_not_equal(copy->data, img->data);
  assert_true(copy->data[5] == 0.25f);
  ps_image_free(img);
  ps_image_free(copy);
  ps_image_free(NULL);
}

/* Output folders (train, evaluate, audit, split, calibrate -o): parents made as needed, an existing
 * folder is fine, a file in the way or an unwritable place is a named error. */
static void test_mkdir_p(void **state) {
  (void)state;
  char *base = ps_test_join(ps_test_tmpdir(), "mkdir_p");
  char *deep = ps_test_join(base, "a/b//c/");
  struct stat sb;
  assert_int_equal(ps_mkdir_p("evaluate", deep), PS_OK);
  assert_int_equal(stat(deep, &sb), 0);
  assert_true(S_ISDIR(sb.st_mode));
  assert_int_equal(ps_mkdir_p("evaluate", deep), PS_OK); /* again: already there */
  char *file = ps_test_join(base, "a/file");
  FILE *f = fopen(file, "w");
  assert_non_null(f);
  fclose(f);
  char *under = ps_test_join(file, "run");
  assert_int_equal(ps_mkdir_p("evaluate", file), PS_EIO);
  assert_non_null(strstr(ps_last_error(), "evaluate: "));
  assert_non_null(strstr(ps_last_error(), "is not a folder"));
  assert_int_equal(ps_mkdir_p("train", under), PS_EIO); /* a file as a parent: named */
  assert_non_null(strstr(ps_last_error(), "train: "));
  assert_non_null(strstr(ps_last_error(), "a/file exists and is not a folder"));
  assert_int_equal(ps_mkdir_p("split", "/proc/pneumoscope-no/run"), PS_EIO); /* not even root */
  assert_non_null(strstr(ps_last_error(), "split: cannot create /proc/pneumoscope-no: "));
  assert_int_equal(ps_mkdir_p("train", ""), PS_EINVAL);
  free(under), free(file), free(deep), free(base);
}

static void test_read_opts_defaults(void **state) {
  (void)state;
  ps_read_opts zero;
  memset(&zero, 0, sizeof zero);
  assert_true(ps_read_opts_max_pixels(&zero) == PS_DEFAULT_MAX_PIXELS);
  assert_true(ps_read_opts_max_bytes(NULL) == PS_DEFAULT_MAX_BYTES);
  zero.max_pixels = 10;
  assert_true(ps_read_opts_max_pixels(&zero) == 10);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_error_detail_is_per_thread),
      cmocka_unit_test(test_error_not_shared_between_threads),
      cmocka_unit_test(test_image_create_rejects_bad_sizes),
      cmocka_unit_test(test_read_opts_defaults),
      cmocka_unit_test(test_mkdir_p),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
