/* ps_image_read: open a film, check limits, sniff the content and hand it to the right decoder. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image_internal.h"
#include "ps_image_io.h"

#ifdef PS_HAVE_DICOM
#if defined(__has_include)
#if __has_include("ps_dicom.h")
#include "ps_dicom.h"
#define PS_IMAGE_HAVE_DICOM_HEADER 1
#endif
#endif
#ifndef PS_IMAGE_HAVE_DICOM_HEADER
/* From the API contract (dicom/ps_dicom.h, written by the DICOM module). */
int ps_dicom_read(const char *path, const ps_read_opts *opts, ps_image **out);
int ps_dicom_read_warnings(const char *path, const ps_read_opts *opts, ps_image **out, char ***warnings,
                           int *nwarnings);
int ps_dicom_probe(const char *path);
#endif
/* Weak references: the library still links while the DICOM reader is not there. */
#pragma weak ps_dicom_read
#pragma weak ps_dicom_read_warnings
#pragma weak ps_dicom_probe
#endif

/* ---- decoder warnings -------------------------------------------------------------------- */

int ps__warn_add(ps__warnings *w, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (w->n == w->cap) {
    int cap = w->cap ? 2 * w->cap : 4;
    char **t = realloc(w->text, sizeof *t * (size_t)cap);
    if (!t) return PS_ENOMEM;
    w->text = t;
    w->cap = cap;
  }
  char *d = strdup(buf);
  if (!d) return PS_ENOMEM;
  w->text[w->n++] = d;
  return PS_OK;
}

void ps__warn_clear(ps__warnings *w) {
  ps_image_warnings_free(w->text, w->n);
  memset(w, 0, sizeof *w);
}

void ps_image_warnings_free(char **warnings, int nwarnings) {
  if (!warnings) return;
  for (int i = 0; i < nwarnings; i++) free(warnings[i]);
  free(warnings);
}

static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

static ps_format sniff_bytes(const uint8_t *b, size_t n) {
  if (n >= 8 && memcmp(b, png_magic, 8) == 0) return PS_FORMAT_PNG;
  if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff) return PS_FORMAT_JPEG;
  if (n >= 132 && memcmp(b + 128, "DICM", 4) == 0) return PS_FORMAT_DICOM;
  /* ACR-NEMA style (no preamble): starts with a little-endian group 0x0008 or 0x0002 tag. */
  if (n >= 8 && (b[0] == 0x08 || b[0] == 0x02) && b[1] == 0x00 && b[3] == 0x00) return PS_FORMAT_DICOM;
  return PS_FORMAT_UNKNOWN;
}

/* Open path for reading as a regular file; fills *size. Errors name the file. */
static int open_film(const char *path, const ps_read_opts *opts, int *fd_out, size_t *size) {
  *fd_out = -1;
  /* O_NONBLOCK: a FIFO or device named like a film must not block the open; it is refused
   * below as not a regular file, and regular files are switched back to blocking reads. */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    int e = errno;
    if (e == ENOENT) return ps_error(PS_EIO, "image: no such file: %s", path);
    if (e == EISDIR) return ps_error(PS_EIO, "image: %s is a directory, not a film", path);
    return ps_error(PS_EIO, "image: cannot open %s: %s", path, strerror(e));
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return ps_error(PS_EIO, "image: cannot stat %s: %s", path, strerror(e));
  }
  if (S_ISDIR(st.st_mode)) {
    close(fd);
    return ps_error(PS_EIO, "image: %s is a directory, not a film", path);
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return ps_error(PS_EIO, "image: %s is not a regular file (device, FIFO or socket), not a film", path);
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl != -1) (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return ps_error(PS_EIO, "image: %s is not a regular file", path);
  }
  int64_t max_bytes = ps_read_opts_max_bytes(opts);
  if ((int64_t)st.st_size > max_bytes) {
    close(fd);
    return ps_error(PS_ELIMIT, "image: %s is %lld bytes, over the limit of %lld bytes", path,
                    (long long)st.st_size, (long long)max_bytes);
  }
  if (st.st_size == 0) {
    close(fd);
    return ps_error(PS_EFORMAT, "image: %s is empty (0 bytes), not a film", path);
  }
  *fd_out = fd;
  *size = (size_t)st.st_size;
  return PS_OK;
}

/* Read up to n bytes (fewer only at end of file). Returns bytes read or -1. */
static ssize_t read_full(int fd, uint8_t *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (r == 0) break;
    got += (size_t)r;
  }
  return (ssize_t)got;
}

ps_format ps_image_sniff(const char *path) {
  if (!path) return PS_FORMAT_UNKNOWN;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return PS_FORMAT_UNKNOWN;
  struct stat st;
  uint8_t head[132];
  ssize_t n = -1;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) n = read_full(fd, head, sizeof head);
  close(fd);
  return n > 0 ? sniff_bytes(head, (size_t)n) : PS_FORMAT_UNKNOWN;
}

int ps_image_read_memory(const void *data, size_t size, const char *name, const ps_read_opts *opts,
                         ps_image **out) {
  if (!out) return ps_error(PS_EINVAL, "image: NULL out pointer");
  *out = NULL;
  if (!name) name = "(memory)";
  if (!data && size) return ps_error(PS_EINVAL, "image: NULL data for %s", name);
  if (size == 0) return ps_error(PS_EFORMAT, "image: %s is empty (0 bytes), not a film", name);
  int64_t max_bytes = ps_read_opts_max_bytes(opts);
  if ((int64_t)size > max_bytes)
    return ps_error(PS_ELIMIT, "image: %s is %zu bytes, over the limit of %lld bytes", name, size,
                    (long long)max_bytes);
  switch (sniff_bytes(data, size)) {
    case PS_FORMAT_PNG: return ps__png_decode(data, size, name, opts, NULL, out);
    case PS_FORMAT_JPEG: return ps__jpeg_decode(data, size, name, opts, NULL, out);
    case PS_FORMAT_DICOM:
      return ps_error(PS_EUNSUPPORTED, "image: %s looks like DICOM; DICOM films are read from a path", name);
    default: return ps_error(PS_EFORMAT, "image: %s is not a PNG, JPEG or DICOM film", name);
  }
}

static int read_dicom(const char *path, const ps_read_opts *opts, ps__warnings *warn, ps_image **out,
                      int looks_dicom) {
#ifdef PS_HAVE_DICOM
  if (ps_dicom_read && (!warn || ps_dicom_read_warnings)) {
    if (!looks_dicom && ps_dicom_probe && ps_dicom_probe(path) != 1)
      return ps_error(PS_EFORMAT, "image: %s is not a PNG, JPEG or DICOM film", path);
    if (!warn) return ps_dicom_read(path, opts, out);
    int st = ps_dicom_read_warnings(path, opts, out, &warn->text, &warn->n);
    warn->cap = warn->n;
    return st;
  }
  if (!looks_dicom) return ps_error(PS_EFORMAT, "image: %s is not a PNG, JPEG or DICOM film", path);
  return ps_error(PS_EUNSUPPORTED, "image: %s is DICOM but the DICOM reader is not in this build", path);
#else
  (void)opts;
  (void)warn;
  (void)out;
  if (!looks_dicom) return ps_error(PS_EFORMAT, "image: %s is not a PNG, JPEG or DICOM film", path);
  return ps_error(PS_EUNSUPPORTED, "image: %s is DICOM: built without DICOM", path);
#endif
}

/* ps_image_read (warn NULL) and ps_image_read_warnings (warn: an empty list to fill). */
static int read_film(const char *path, const ps_read_opts *opts, ps__warnings *warn, ps_image **out) {
  if (!out) return ps_error(PS_EINVAL, "image: NULL out pointer");
  *out = NULL;
  if (!path || !*path) return ps_error(PS_EINVAL, "image: no file name given");
  int fd = -1;
  size_t size = 0;
  int st = open_film(path, opts, &fd, &size);
  if (st != PS_OK) return st;
  uint8_t head[132];
  ssize_t n = read_full(fd, head, size < sizeof head ? size : sizeof head);
  if (n < 0) {
    int e = errno;
    close(fd);
    return ps_error(PS_EIO, "image: cannot read %s: %s", path, strerror(e));
  }
  ps_format f = sniff_bytes(head, (size_t)n);
  if (f != PS_FORMAT_PNG && f != PS_FORMAT_JPEG) {
    close(fd);
    return read_dicom(path, opts, warn, out, f == PS_FORMAT_DICOM);
  }
  uint8_t *buf = malloc(size);
  if (!buf) {
    close(fd);
    return ps_error(PS_ENOMEM, "image: out of memory reading %s (%zu bytes)", path, size);
  }
  memcpy(buf, head, (size_t)n);
  ssize_t rest = read_full(fd, buf + n, size - (size_t)n);
  int e = errno;
  close(fd);
  if (rest < 0) {
    free(buf);
    return ps_error(PS_EIO, "image: cannot read %s: %s", path, strerror(e));
  }
  size = (size_t)n + (size_t)rest; /* the file may have shrunk meanwhile */
  st = f == PS_FORMAT_PNG ? ps__png_decode(buf, size, path, opts, warn, out)
                          : ps__jpeg_decode(buf, size, path, opts, warn, out);
  free(buf);
  return st;
}

int ps_image_read(const char *path, const ps_read_opts *opts, ps_image **out) {
  return read_film(path, opts, NULL, out);
}

int ps_image_read_warnings(const char *path, const ps_read_opts *opts, ps_image **out, char ***warnings,
                           int *nwarnings) {
  if (warnings) *warnings = NULL;
  if (nwarnings) *nwarnings = 0;
  if (!warnings || !nwarnings) {
    if (out) *out = NULL;
    return ps_error(PS_EINVAL, "image: NULL warnings pointer");
  }
  ps__warnings w = {NULL, 0, 0};
  int st = read_film(path, opts, &w, out);
  if (st != PS_OK) {
    ps__warn_clear(&w);
    return st;
  }
  *warnings = w.text;
  *nwarnings = w.n;
  return PS_OK;
}

int ps_image_same_file(const char *path, const char *other) {
  struct stat a, b;
  if (!path || !other || stat(path, &a) != 0 || stat(other, &b) != 0) return 0;
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}
