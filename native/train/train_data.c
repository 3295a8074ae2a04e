/* native/train's view of a split manifest (through ps_dataset) plus small shared helpers. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ps_dataset.h"
#include "train_internal.h"

const char *ps_train_class_name(int task, int cls) { return ps_dataset_class_name((ps_task)task, cls); }

void ps_train_films_free(ps_train_films *f) {
  if (!f) return;
  for (int i = 0; i < f->n; i++) {
    free(f->paths[i]);
    free(f->sha256[i]);
    free(f->patient[i]);
  }
  free(f->paths);
  free(f->sha256);
  free(f->patient);
  free(f->cls);
  free(f->split);
  memset(f, 0, sizeof *f);
}

int ps_train_films_read(const char *manifest, int task, int limit, int check_leak, ps_train_films *out) {
  memset(out, 0, sizeof *out);
  if (!manifest) return ps_error(PS_EINVAL, "train: no manifest given");
  ps_dataset *ds = NULL;
  int st = ps_dataset_read_manifest(manifest, &ds);
  if (st != PS_OK) return st;
  if (check_leak) {
    ps_leakage_report rep;
    if ((st = ps_dataset_audit(ds, &rep)) != PS_OK) goto fail;
    if (rep.patients_across_splits > 0 || rep.hashes_across_splits > 0) {
      st = ps_error(PS_EINVAL,
                    "train: %s leaks between splits: %zu patient(s) and %zu identical file(s) appear in more than "
                    "one split (re-split with `pneumoscope split`)",
                    manifest, rep.patients_across_splits, rep.hashes_across_splits);
      goto fail;
    }
  }
  size_t n = ps_dataset_size(ds);
  out->paths = calloc(n + 1, sizeof(char *));
  out->sha256 = calloc(n + 1, sizeof(char *));
  out->patient = calloc(n + 1, sizeof(char *));
  out->cls = calloc(n + 1, sizeof(int));
  out->split = calloc(n + 1, sizeof(int));
  if (!out->paths || !out->sha256 || !out->patient || !out->cls || !out->split) {
    st = ps_error(PS_ENOMEM, "train: out of memory");
    goto fail;
  }
  /* limit: the films of rank floor(j * count / limit), j = 0..limit-1, of each split (evenly spaced
   * through the manifest, so the class mix of a path-sorted manifest is kept) */
  size_t total[3] = {0, 0, 0}, rank[3] = {0, 0, 0}, taken[3] = {0, 0, 0};
  for (size_t i = 0; i < n; i++) {
    const ps_dataset_item *it = ps_dataset_item_at(ds, i);
    if (it->split >= PS_SPLIT_TRAIN && it->split <= PS_SPLIT_TEST && ps_dataset_item_class(it, (ps_task)task) >= 0)
      total[it->split]++;
  }
  int skipped = 0;
  for (size_t i = 0; i < n; i++) {
    const ps_dataset_item *it = ps_dataset_item_at(ds, i);
    int c = ps_dataset_item_class(it, (ps_task)task);
    if (it->split < PS_SPLIT_TRAIN || it->split > PS_SPLIT_TEST || c < 0) {
      skipped++;
      continue;
    }
    if (limit > 0 && (size_t)limit < total[it->split]) {
      size_t r = rank[it->split]++, j = taken[it->split];
      if (j >= (size_t)limit || r != j * total[it->split] / (size_t)limit) continue;
      taken[it->split]++;
    }
    int k = out->n;
    out->paths[k] = strdup(it->path);
    out->sha256[k] = strdup(it->sha256);
    out->patient[k] = strdup(it->patient_id);
    out->n++;
    if (!out->paths[k] || !out->sha256[k] || !out->patient[k]) {
      st = ps_error(PS_ENOMEM, "train: out of memory");
      goto fail;
    }
    out->cls[k] = c;
    out->split[k] = it->split;
    out->count[it->split]++;
  }
  if (skipped) ps_log(PS_LOG_WARN, "train: %d film(s) of %s have no split or no %s class: left out", skipped, manifest,
                      task ? "multiclass" : "binary");
  ps_dataset_free(ds);
  return PS_OK;
fail:
  ps_dataset_free(ds);
  ps_train_films_free(out);
  return st;
}

/* ---- files ---- */

/* name = base + ".tmp" + pid (the film cache's temporary of base), optionally + "." + 6
 * characters (ps__write_atomic's and ps_model_save's mkstemp temporaries): the pid, else 0. */
static long tmp_owner(const char *name, const char *base) {
  size_t n = strlen(base);
  if (strncmp(name, base, n) != 0 || strncmp(name + n, ".tmp", 4) != 0) return 0;
  const char *d = name + n + 4, *start = d;
  long pid = 0;
  for (; *d >= '0' && *d <= '9'; d++) {
    if (pid > 100000000) return 0;
    pid = pid * 10 + (*d - '0');
  }
  if (d == start) return 0;
  if (*d == 0 || (*d == '.' && strlen(d + 1) == 6)) return pid;
  return 0;
}

int ps_train_sweep_tmp(const char *dir, const char *const *bases, int nbases) {
  DIR *dp = opendir(dir);
  if (!dp) return 0;
  int removed = 0;
  struct dirent *de;
  while ((de = readdir(dp)) != NULL) {
    for (int i = 0; i < nbases; i++) {
      long pid = tmp_owner(de->d_name, bases[i]);
      /* only a temporary whose writer is gone: a running writer (this or another process) keeps it */
      if (pid <= 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
      size_t len = strlen(dir) + strlen(de->d_name) + 2;
      char *p = malloc(len);
      if (!p) break;
      snprintf(p, len, "%s/%s", dir, de->d_name);
      if (unlink(p) == 0) {
        removed++;
        ps_log(PS_LOG_INFO, "train: removed %s, left by an interrupted run (process %ld)", p, pid);
      }
      free(p);
      break;
    }
  }
  closedir(dp);
  return removed;
}

int ps_train_sha256_file(const char *path, char hex[65]) { return ps_sha256_file(path, hex); }

int ps_train_cached_input(const uint8_t *pix, int S, const float mean[3], const float std[3],
                          const ps_augment_opts *aug, uint64_t seed, float *src, float *dst, float *out) {
  const size_t px = (size_t)S * S;
  for (size_t i = 0; i < px; i++) src[i] = pix[i] * (1.0f / 255.0f);
  const float *g = src;
  if (aug) {
    int st = ps_augment(src, S, S, aug, seed, dst, S, S);
    if (st != PS_OK) return st;
    g = dst;
  }
  ps_preprocess_normalize(g, S, S, mean, std, out);
  return PS_OK;
}
