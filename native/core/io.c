/* io.c — the CSV and JSON files the library writes, written atomically (ps_internal.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ps_common.h"
#include "ps_internal.h"

int ps_mkdir_p(const char *who, const char *path) {
  if (!path || !*path) return ps_error(PS_EINVAL, "%s: no folder given", who);
  char *tmp = strdup(path);
  if (!tmp) return ps_error(PS_ENOMEM, "out of memory");
  int st = PS_OK;
  for (char *p = tmp + 1;; p++) {
    if (*p && *p != '/') continue;
    char c = *p;
    *p = '\0';
    struct stat sb;
    if (mkdir(tmp, 0777) != 0 && errno != EEXIST) {
      st = ps_error(PS_EIO, "%s: cannot create %s: %s", who, tmp, strerror(errno));
      break;
    }
    if (stat(tmp, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
      st = ps_error(PS_EIO, "%s: %s exists and is not a folder", who, tmp);
      break;
    }
    if (!c) break;
    *p = c;
  }
  free(tmp);
  return st;
}

void ps__csv_write_field(FILE *f, const char *s) {
  if (!s) return;
  if (strpbrk(s, ",\"\n\r") == NULL) {
    fputs(s, f);
    return;
  }
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '"') fputc('"', f);
    fputc(*s, f);
  }
  fputc('"', f);
}

int ps__write_atomic(const char *path, int force, int (*fill)(FILE *f, void *user), void *user) {
  if (!force && access(path, F_OK) == 0)
    return ps_error(PS_EINVAL, "%s already exists (not overwritten; use force)", path);
  size_t n = strlen(path);
  char *tmp = malloc(n + 40);
  if (!tmp) return ps_error(PS_ENOMEM, "out of memory");
  /* <path>.tmp<pid>.XXXXXX, as ps_model_save's: a run that finds one whose process is gone may
   * remove it (ps_train_sweep_tmp) */
  snprintf(tmp, n + 40, "%s.tmp%ld.XXXXXX", path, (long)getpid());
  int fd = mkstemp(tmp);
  if (fd < 0) {
    int e = errno;
    free(tmp);
    return ps_error(PS_EIO, "cannot create a temporary file next to %s: %s", path, strerror(e));
  }
  fchmod(fd, 0644);
  FILE *f = fdopen(fd, "wb");
  if (!f) {
    close(fd);
    unlink(tmp);
    free(tmp);
    return ps_error(PS_EIO, "cannot write %s", path);
  }
  int st = fill(f, user);
  if (fflush(f) != 0 || ferror(f)) st = st ? st : ps_error(PS_EIO, "write error on %s: %s", path, strerror(errno));
  if (st == PS_OK && fsync(fileno(f)) != 0) st = ps_error(PS_EIO, "cannot sync %s: %s", path, strerror(errno));
  if (fclose(f) != 0 && st == PS_OK) st = ps_error(PS_EIO, "cannot close %s: %s", path, strerror(errno));
  if (st == PS_OK) {
    if (force) {
      if (rename(tmp, path) != 0) st = ps_error(PS_EIO, "cannot rename onto %s: %s", path, strerror(errno));
    } else if (link(tmp, path) != 0) { /* no-clobber: fails when path appeared meanwhile */
      st = ps_error(errno == EEXIST ? PS_EINVAL : PS_EIO, "%s: %s", path,
                    errno == EEXIST ? "already exists (not overwritten; use force)" : strerror(errno));
    }
  }
  if (st != PS_OK || !force) unlink(tmp);
  free(tmp);
  return st;
}

json_t *ps__json_num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

json_t *ps__json_str(const char *s) {
  if (!s) return json_null();
  json_t *j = json_string(s);
  if (j) return j;
  char *c = strdup(s); /* not UTF-8 (a Latin-1 file name): keep what can be kept */
  if (!c) return NULL;
  for (char *p = c; *p; p++)
    if ((unsigned char)*p >= 0x80) *p = '?';
  j = json_string(c);
  free(c);
  return j;
}

static int dump_fill(FILE *f, void *user) {
  return json_dumpf((json_t *)user, f, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) != 0 || fputc('\n', f) == EOF
             ? ps_error(PS_EIO, "write error: %s", strerror(errno))
             : PS_OK;
}

int ps__json_dump(FILE *f, json_t *j) {
  if (!j) return ps_error(PS_ENOMEM, "out of memory building JSON");
  int st = dump_fill(f, j);
  json_decref(j);
  return st;
}

int ps__json_write_atomic(const char *path, int force, json_t *j) {
  if (!j) return ps_error(PS_ENOMEM, "out of memory building JSON for %s", path);
  int st = ps__write_atomic(path, force, dump_fill, j);
  json_decref(j);
  return st;
}
