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
#endif
