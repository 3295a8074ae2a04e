/* materialize.c — dir/{train,val,test}/{CLASS}/file symlink trees; never touches a user file. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataset_internal.h"

#define MARKER ".pneumoscope-materialized"

/* Absolute, normalised form of a path that may not exist yet: realpath of the longest existing
 * ancestor plus the remaining components. */
static int abs_path(const char *path, char out[PATH_MAX]) {
  char tmp[PATH_MAX];
  if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) return -1;
  size_t n = strlen(tmp);
  while (n > 1 && tmp[n - 1] == '/') tmp[--n] = '\0';
  char rest[PATH_MAX] = "";
  for (;;) {
    if (realpath(tmp[0] ? tmp : ".", out)) break;
    char *slash = strrchr(tmp, '/');
    char seg[PATH_MAX];
    if (!slash) {
      snprintf(seg, sizeof seg, "%s%s%s", tmp, rest[0] ? "/" : "", rest);
      snprintf(rest, sizeof rest, "%s", seg);
      tmp[0] = '\0';
      continue;
    }
    snprintf(seg, sizeof seg, "%s%s%s", slash + 1, rest[0] ? "/" : "", rest);
    snprintf(rest, sizeof rest, "%s", seg);
    if (slash == tmp) {
      tmp[1] = '\0';
      if (!realpath("/", out)) return -1;
      break;
    }
    *slash = '\0';
  }
  if (rest[0]) {
    size_t l = strlen(out);
    if (snprintf(out + l, PATH_MAX - l, "%s%s", out[l - 1] == '/' ? "" : "/", rest) >= (int)(PATH_MAX - l)) return -1;
  }
  return 0;
}

static int is_inside(const char *child, const char *parent) {
  size_t n = strlen(parent);
  if (n == 1 && parent[0] == '/') return 1;
  return !strncmp(child, parent, n) && (child[n] == '/' || child[n] == '\0');
}

/* Remove our stale symlinks dir/<split>/<class>/<link> (only symlinks, only in a marked tree). */
static void remove_old_links(const char *dir) {
  static const char *const splits[] = {"train", "val", "test"};
  for (int s = 0; s < 3; s++) {
    char sd[PATH_MAX];
    snprintf(sd, sizeof sd, "%s/%s", dir, splits[s]);
    DIR *d = opendir(sd);
    if (!d) continue;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      if (e->d_name[0] == '.') continue;
      char cd[PATH_MAX];
      if (snprintf(cd, sizeof cd, "%s/%s", sd, e->d_name) >= (int)sizeof cd) continue;
      struct stat st;
      if (lstat(cd, &st) != 0 || !S_ISDIR(st.st_mode)) continue;
      DIR *d2 = opendir(cd);
      if (!d2) continue;
      struct dirent *f;
      while ((f = readdir(d2)) != NULL) {
        char fp[PATH_MAX];
        if (snprintf(fp, sizeof fp, "%s/%s", cd, f->d_name) >= (int)sizeof fp) continue;
        if (lstat(fp, &st) == 0 && S_ISLNK(st.st_mode)) unlink(fp);
      }
      closedir(d2);
    }
    closedir(d);
  }
}

int ps_dataset_materialize(const ps_dataset *ds, const char *dir, ps_task task, size_t *made) {
  if (made) *made = 0;
  if (!ds || !dir || !*dir) return ps_error(PS_EINVAL, "materialize: NULL dataset or folder");
  if (task != PS_TASK_BINARY && task != PS_TASK_MULTICLASS) return ps_error(PS_EINVAL, "materialize: unknown task %d", task);
  char adir[PATH_MAX];
  if (abs_path(dir, adir) != 0) return ps_error(PS_ELIMIT, "materialize: cannot resolve %s", dir);
  /* refuse a target inside (or equal to) a class folder of the source tree */
  for (size_t i = 0; i < ds->n; i++) {
    char film[PATH_MAX], fdir[PATH_MAX];
    snprintf(film, sizeof film, "%s", ds->items[i].path);
    char *slash = strrchr(film, '/');
    if (!slash) continue;
    *slash = '\0';
    if (!realpath(film[0] ? film : "/", fdir)) continue;
    if (is_inside(adir, fdir))
      return ps_error(PS_EINVAL, "materialize: %s lies inside the source class folder %s (refused)", dir, fdir);
    if (i + 1 < ds->n) { /* skip films of the same folder quickly */
      size_t l = strlen(film);
      while (i + 1 < ds->n && !strncmp(ds->items[i + 1].path, film, l) && ds->items[i + 1].path[l] == '/' &&
             !strchr(ds->items[i + 1].path + l + 1, '/'))
        i++;
    }
  }
  struct stat s;
  int ours = 0;
  if (lstat(adir, &s) == 0) {
    if (!S_ISDIR(s.st_mode)) return ps_error(PS_EINVAL, "materialize: %s exists and is not a folder (refused)", dir);
    char marker[PATH_MAX];
    snprintf(marker, sizeof marker, "%s/" MARKER, adir);
    ours = access(marker, F_OK) == 0;
    if (!ours) {
      DIR *d = opendir(adir);
      if (!d) return ps_error(PS_EIO, "materialize: cannot open %s: %s", dir, strerror(errno));
      struct dirent *e;
      int empty = 1;
      while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) empty = 0;
      closedir(d);
      if (!empty)
        return ps_error(PS_EINVAL, "materialize: %s is not empty and was not made by pneumoscope (refused; choose a new folder)", dir);
    }
  }
  int st = ps_mkdir_p("materialize", adir);
  if (st) return st;
  {
    char marker[PATH_MAX];
    snprintf(marker, sizeof marker, "%s/" MARKER, adir);
    FILE *f = fopen(marker, "w");
    if (!f) return ps_error(PS_EIO, "materialize: cannot write %s: %s", marker, strerror(errno));
    fprintf(f, "Made by pneumoscope split --materialize: symlinks to the films, task %s.\n"
               "pneumoscope may replace the symlinks here; it never touches other files.\n",
            task == PS_TASK_MULTICLASS ? "multiclass" : "binary");
    if (fclose(f) != 0) return ps_error(PS_EIO, "materialize: cannot write %s", marker);
  }
  if (ours) remove_old_links(adir);
  size_t count = 0, skipped = 0;
  int K = ps_dataset_num_classes(task);
  for (int sp = 0; sp < 3; sp++)
    for (int c = 0; c < K; c++) {
      char cd[PATH_MAX];
      snprintf(cd, sizeof cd, "%s/%s/%s", adir, ps_dataset_split_name(sp), ps_dataset_class_name(task, c));
      if ((st = ps_mkdir_p("materialize", cd)) != PS_OK) return st;
    }
  for (size_t i = 0; i < ds->n; i++) {
    const ps_dataset_item *it = &ds->items[i];
    int c = ps_dataset_item_class(it, task);
    if (it->split < 0 || it->split > 2 || c < 0) {
      if (skipped++ < 5) ps_log(PS_LOG_WARN, "materialize: %s has no %s, skipped", it->rel_path, c < 0 ? "class for this task" : "split");
      continue;
    }
    const char *b = strrchr(it->path, '/');
    b = b ? b + 1 : it->path;
    char link_path[PATH_MAX];
    const char *dot = strrchr(b, '.');
    size_t stem = dot && dot != b ? (size_t)(dot - b) : strlen(b);
    for (int k = 1;; k++) {
      int n;
      if (k == 1)
        n = snprintf(link_path, sizeof link_path, "%s/%s/%s/%s", adir, ps_dataset_split_name(it->split),
                     ps_dataset_class_name(task, c), b);
      else
        n = snprintf(link_path, sizeof link_path, "%s/%s/%s/%.*s-%d%s", adir, ps_dataset_split_name(it->split),
                     ps_dataset_class_name(task, c), (int)stem, b, k, b + stem);
      if (n >= (int)sizeof link_path) return ps_error(PS_ELIMIT, "materialize: path too long for %s", it->rel_path);
      if (symlink(it->path, link_path) == 0) break;
      if (errno != EEXIST) return ps_error(PS_EIO, "materialize: cannot create link %s: %s", link_path, strerror(errno));
      if (k > 10000) return ps_error(PS_ELIMIT, "materialize: too many films named %s", b);
      /* the name exists: a film we linked in this run (clash) or a user file; try the next name */
    }
    count++;
  }
  if (skipped) ps_log(PS_LOG_WARN, "materialize: %zu films skipped (no split or no class for the task)", skipped);
  if (made) *made = count;
  return PS_OK;
}
