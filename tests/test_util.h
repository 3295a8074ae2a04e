/* test_util.h — shared helpers for the CMocka tests: real-film paths, temp folders, running the
 * reference programs (python3 with pydicom/Pillow/torchvision/sklearn) and reading their .npy. */
#ifndef PS_TEST_UTIL_H
#define PS_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka.h needs the headers above first */
#include <cmocka.h>

/* Path under ../shared/data (static buffer per call slot; copy if you keep it). */
const char *ps_test_data(const char *rel);
/* Path under the source tree (e.g. "sample_data/..."), and under tests/ref/. */
const char *ps_test_src(const char *rel);
/* A fresh empty temp folder for this test process (removed at exit). */
const char *ps_test_tmpdir(void);
/* Join dir + "/" + name into a malloc'd string. */
char *ps_test_join(const char *dir, const char *name);
/* `pneumoscope split` of the shared kaggle films (seed 11, multiclass) into <tmpdir>/split: the
 * manifest's path (malloc'd), or NULL when the split failed. */
char *ps_test_kaggle_manifest(void);
/* Run a shell command; returns its exit status (-1 if it could not run). Output goes to
 * the test's stdout unless captured with ps_test_capture. */
int ps_test_system(const char *fmt, ...);
/* Run a shell command and capture stdout into a malloc'd NUL-terminated string. */
char *ps_test_capture(int *exit_status, const char *fmt, ...);
/* Run a shell command (stdout captured and printed): its exit status must be want_status and its
 * output must hold needle (unless NULL); fails the test otherwise. */
void ps_test_expect(int want_status, const char *needle, const char *fmt, ...);
/* True when the python reference environment has all the named modules ("torch,pydicom"). */
int ps_test_have_python(const char *modules);
/* Read a little-endian .npy of float32/float64/uint8/uint16/int32/int64 into float64s.
 * shape: up to 4 dims written to shape[], ndim returned in *ndim. Returns malloc'd data. */
double *ps_test_read_npy(const char *path, size_t shape[4], int *ndim);
/* Write float32 data (C order) as .npy. Returns 0 on success. */
int ps_test_write_npy_f32(const char *path, const float *data, const size_t *shape, int ndim);
/* Size of a file in bytes, -1 when it cannot be read. */
long ps_test_file_size(const char *path);
/* A whole file (malloc'd, NUL after its *len bytes), NULL when it cannot be read. */
char *ps_test_read_file(const char *path, size_t *len);
/* Entries of a folder other than . and .. (-1 when it cannot be opened). */
int ps_test_count_entries(const char *dir);

/* Every film in sample_data/films (paths relative to the source tree: pass through ps_test_src):
 * the PS_TEST_N_FRONTAL frontal chest films first, then the deliberately fake MONOCHROME1 DICOM
 * (its photometric tag was flipped, so its display is a negative). */
#define PS_TEST_N_FRONTAL 14
#define PS_TEST_N_SAMPLE 15
extern const char *const ps_test_sample_films[PS_TEST_N_SAMPLE];

/* Skip (cmocka skip()) with a reason printed, when a condition for an optional resource fails. */
#define PS_TEST_SKIP_UNLESS(cond, why)                        \
  do {                                                         \
    if (!(cond)) {                                             \
      print_message("[  SKIPPED ] %s: %s\n", __func__, (why)); \
      skip();                                                  \
    }                                                          \
  } while (0)

#endif
