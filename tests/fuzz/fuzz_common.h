/* fuzz_common.h — helpers shared by the libFuzzer harnesses (tests/fuzz/run.sh builds them).
 * The readers under test take a path, so inputs go through an anonymous memfd named by
 * /proc/self/fd/N (no file system litter, nothing outside the process). */
#ifndef PS_FUZZ_COMMON_H
#define PS_FUZZ_COMMON_H
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ps_common.h"
#include "ps_image_io.h"

/* A path whose content is data[0..size). Returns the fd (close it after use) or -1. */
static inline int ps_fuzz_memfile(const uint8_t *data, size_t size, char path[64]) {
  int fd = memfd_create("ps_fuzz", MFD_CLOEXEC);
  if (fd < 0) return -1;
  size_t off = 0;
  while (off < size) {
    ssize_t w = write(fd, data + off, size - off);
    if (w <= 0) {
      close(fd);
      return -1;
    }
    off += (size_t)w;
  }
  snprintf(path, 64, "/proc/self/fd/%d", fd);
  return fd;
}

/* Every failure must carry a message (the contract: status + a message naming the file). */
static inline void ps_fuzz_check_error(int st, const char *what) {
  if (st != PS_OK) {
    const char *e = ps_last_error();
    if (!e || !*e) {
      fprintf(stderr, "%s: status %d (%s) without an error message\n", what, st, ps_strerror(st));
      abort();
    }
  }
}
/* ps_image_read on path, and the contract between it and the listing reader: ps_image_read accepts
 * a film exactly when ps_image_read_warnings reads it with no warning; a listed read gives a usable
 * image. */
static inline void ps_fuzz_check_readers(const char *path, const ps_read_opts *opts) {
  ps_image *img = NULL;
  int strict_status = ps_image_read(path, opts, &img);
  ps_fuzz_check_error(strict_status, "ps_image_read");
  if (strict_status != PS_OK && img) abort();
  ps_image_free(img);
  img = NULL;
  char **w = NULL;
  int nw = 0;
  int st = ps_image_read_warnings(path, opts, &img, &w, &nw);
  ps_fuzz_check_error(st, "ps_image_read_warnings");
  if (st == PS_OK && (!img || img->width <= 0 || img->height <= 0 || !img->data)) abort();
  if (st != PS_OK && (img || w || nw)) abort();
  for (int i = 0; i < nw; i++)
    if (!w[i] || !w[i][0]) abort();
  if ((strict_status == PS_OK) != (st == PS_OK && nw == 0)) {
    fprintf(stderr, "ps_image_read status %d but ps_image_read_warnings %d with %d warnings\n", strict_status, st, nw);
    abort();
  }
  ps_image_warnings_free(w, nw);
  ps_image_free(img);
}

#endif
