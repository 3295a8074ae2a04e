/* split.c — grouping (patient ∪ identical bytes), seeded stratified split, leakage audit. */
#define _GNU_SOURCE
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dataset_internal.h"

size_t ps__uf_find(size_t *parent, size_t i) {
  while (parent[i] != i) {
    parent[i] = parent[parent[i]];
    i = parent[i];
  }
  return i;
}

void ps__uf_union(size_t *parent, size_t a, size_t b) {
  a = ps__uf_find(parent, a);
  b = ps__uf_find(parent, b);
  if (a == b) return;
  if (a < b) parent[b] = a; /* the root is always the smallest index: groups number by first film */
  else parent[a] = b;
}

/* Indices sorted by a string key (0: patient id, 1: sha256), ties by index. */
typedef struct {
  const ps_dataset_item *items;
  int key;
} sort_ctx;

static int cmp_key(const void *a, const void *b, void *ctx) {
  const sort_ctx *c = ctx;
  size_t i = *(const size_t *)a, j = *(const size_t *)b;
  const char *x = c->key ? c->items[i].sha256 : c->items[i].patient_id;
  const char *y = c->key ? c->items[j].sha256 : c->items[j].patient_id;
  int r = strcmp(x, y);
  return r ? r : (i > j) - (i < j);
}

static size_t *sorted_by(const ps_dataset *ds, int key) {
  size_t *idx = malloc((ds->n ? ds->n : 1) * sizeof *idx);
  if (!idx) return NULL;
  for (size_t i = 0; i < ds->n; i++) idx[i] = i;
  sort_ctx c = {ds->items, key};
  qsort_r(idx, ds->n, sizeof *idx, cmp_key, &c);
  return idx;
}

static const char *key_of(const ps_dataset_item *it, int key) { return key ? it->sha256 : it->patient_id; }

/* idx sorted by key: the end of the run of equal keys starting at a; *mask |= the splits in it. */
static size_t run_end(const ps_dataset *ds, const size_t *idx, size_t a, int key, unsigned *mask) {
  const char *k = key_of(&ds->items[idx[a]], key);
  size_t b = a;
  for (; b < ds->n && !strcmp(key_of(&ds->items[idx[b]], key), k); b++) {
    int s = ds->items[idx[b]].split;
    if (s >= 0 && s <= 2) *mask |= 1u << s;
  }
  return b;
}

int ps__ds_groups(ps_dataset *ds, size_t *ngroups) {
  size_t n = ds->n;
  size_t *parent = malloc((n ? n : 1) * sizeof *parent);
  if (!parent) return ps_error(PS_ENOMEM, "dataset: out of memory");
  for (size_t i = 0; i < n; i++) parent[i] = i;
  for (int key = 0; key < 2; key++) {
    size_t *idx = sorted_by(ds, key);
    if (!idx) {
      free(parent);
      return ps_error(PS_ENOMEM, "dataset: out of memory");
    }
    for (size_t k = 1; k < n; k++) {
      const ps_dataset_item *a = &ds->items[idx[k - 1]], *b = &ds->items[idx[k]];
      const char *x = key ? a->sha256 : a->patient_id, *y = key ? b->sha256 : b->patient_id;
      if (x[0] && !strcmp(x, y)) ps__uf_union(parent, idx[k - 1], idx[k]);
    }
    free(idx);
  }
  size_t g = 0;
  for (size_t i = 0; i < n; i++) {
    size_t r = ps__uf_find(parent, i);
    if (r == i) ds->items[i].group = (int)g++;
    else ds->items[i].group = ds->items[r].group; /* r < i: already numbered */
  }
  free(parent);
  if (ngroups) *ngroups = g;
  return PS_OK;
}

/* xoshiro256** seeded through splitmix64 (Vigna): the same stream on every machine. */
typedef struct {
  uint64_t s[4];
} rng;

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(rng *r) {
  uint64_t *s = r->s, result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0], s[3] ^= s[1], s[1] ^= s[2], s[0] ^= s[3], s[2] ^= t, s[3] = rotl(s[3], 45);
  return result;
}

/* Uniform in [0, bound) by rejection (no modulo bias). */
static uint64_t rng_below(rng *r, uint64_t bound) {
  uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
  uint64_t x;
  do x = rng_next(r);
  while (x >= limit);
  return x % bound;
}

int ps_dataset_split(ps_dataset *ds, const ps_split_opts *opts) {
  if (!ds) return ps_error(PS_EINVAL, "split: NULL dataset");
  ps_split_opts o = {{0.70, 0.15, 0.15}, 0, PS_TASK_BINARY};
  if (opts) {
    o.seed = opts->seed;
    o.task = opts->task;
    if (opts->fractions[0] != 0 || opts->fractions[1] != 0 || opts->fractions[2] != 0)
      memcpy(o.fractions, opts->fractions, sizeof o.fractions);
  }
  double sum = 0;
  for (int s = 0; s < 3; s++) {
    if (!(o.fractions[s] >= 0) || !isfinite(o.fractions[s]))
      return ps_error(PS_EINVAL, "split: fraction %g for %s is not a number >= 0", o.fractions[s], ps_dataset_split_name(s));
    sum += o.fractions[s];
  }
  if (fabs(sum - 1) > 1e-6)
    return ps_error(PS_EINVAL, "split: fractions %g,%g,%g sum to %g, not 1", o.fractions[0], o.fractions[1], o.fractions[2], sum);
  if (o.task != PS_TASK_BINARY && o.task != PS_TASK_MULTICLASS) return ps_error(PS_EINVAL, "split: unknown task %d", o.task);
  int K = ps_dataset_num_classes(o.task);
  for (size_t i = 0; i < ds->n; i++)
    if (ps_dataset_item_class(&ds->items[i], o.task) < 0)
      return ps_error(PS_EINVAL, "split: %s has no %s class (pneumonia subtype unknown); split it with the binary task",
                      ds->items[i].rel_path, o.task == PS_TASK_MULTICLASS ? "multiclass" : "binary");
  size_t ng = 0;
  int st = ps__ds_groups(ds, &ng);
  if (st) return st;
  {
    size_t patients = 0;
    size_t *idx = sorted_by(ds, 0);
    if (!idx) return ps_error(PS_ENOMEM, "split: out of memory");
    for (size_t k = 0; k < ds->n; k++)
      patients += k == 0 || strcmp(ds->items[idx[k]].patient_id, ds->items[idx[k - 1]].patient_id) != 0;
    free(idx);
    if (ng < patients)
      ps_log(PS_LOG_INFO, "split: byte-identical films join %zu patients into shared groups (%zu groups for %zu patients)",
             patients - ng, ng, patients);
  }
  size_t *gsize = calloc(ng ? ng : 1, sizeof *gsize), *gcount = calloc((ng ? ng : 1) * K, sizeof *gcount);
  int *gclass = calloc(ng ? ng : 1, sizeof *gclass), *gsplit = calloc(ng ? ng : 1, sizeof *gsplit);
  size_t *order = malloc((ng ? ng : 1) * sizeof *order);
  if (!gsize || !gcount || !gclass || !gsplit || !order) {
    st = ps_error(PS_ENOMEM, "split: out of memory");
    goto done;
  }
  for (size_t g = 0; g < ng; g++) gclass[g] = -1;
  for (size_t i = 0; i < ds->n; i++) {
    int g = ds->items[i].group, c = ps_dataset_item_class(&ds->items[i], o.task);
    gsize[g]++;
    gcount[(size_t)g * K + c]++;
    if (gclass[g] < 0) gclass[g] = c; /* first film's class (items are in path order) */
  }
  for (size_t g = 0; g < ng; g++) { /* majority class; ties keep the first film's class */
    int best = gclass[g];
    for (int c = 0; c < K; c++)
      if (gcount[g * K + c] > gcount[g * K + best]) best = c;
    gclass[g] = best;
  }
  rng r;
  uint64_t sm = o.seed;
  for (int k = 0; k < 4; k++) r.s[k] = splitmix64(&sm);
  for (int c = 0; c < K; c++) {
    size_t m = 0, total = 0;
    for (size_t g = 0; g < ng; g++)
      if (gclass[g] == c) order[m++] = g, total += gsize[g];
    for (size_t i = m; i > 1; i--) { /* Fisher-Yates */
      size_t j = (size_t)rng_below(&r, i);
      size_t t = order[i - 1];
      order[i - 1] = order[j];
      order[j] = t;
    }
    double b1 = o.fractions[0] * (double)total, b2 = (o.fractions[0] + o.fractions[1]) * (double)total;
    size_t cum = 0;
    for (size_t k = 0; k < m; k++) {
      size_t g = order[k];
      double mid = (double)cum + 0.5 * (double)gsize[g];
      gsplit[g] = mid < b1 ? PS_SPLIT_TRAIN : mid < b2 ? PS_SPLIT_VAL : PS_SPLIT_TEST;
      /* an empty split (fraction 0) never receives a group */
      while (o.fractions[gsplit[g]] == 0) gsplit[g] = (gsplit[g] + 2) % 3;
      cum += gsize[g];
    }
  }
  for (size_t i = 0; i < ds->n; i++) ds->items[i].split = gsplit[ds->items[i].group];
done:
  free(gsize), free(gcount), free(gclass), free(gsplit), free(order);
  return st;
}

int ps_dataset_use_source_split(ps_dataset *ds) {
  if (!ds) return ps_error(PS_EINVAL, "split: NULL dataset");
  int n = 0;
  for (size_t i = 0; i < ds->n; i++) {
    ds->items[i].split = ds->items[i].source_split;
    n += ds->items[i].split != PS_SPLIT_NONE;
  }
  return n;
}

/* ---- audit --------------------------------------------------------------------------------- */

static int split_mask_leaks(unsigned mask) { return mask && (mask & (mask - 1)); }

int ps_dataset_audit(ps_dataset *ds, ps_leakage_report *out) {
  if (!ds || !out) return ps_error(PS_EINVAL, "audit: NULL dataset or report");
  memset(out, 0, sizeof *out);
  size_t ng = 0;
  int st = ps__ds_groups(ds, &ng);
  if (st) return st;
  out->films = ds->n;
  out->groups = ng;
  for (size_t i = 0; i < ds->n; i++) {
    const ps_dataset_item *it = &ds->items[i];
    if (!it->sha256[0]) out->unhashed++;
    if (it->split < 0 || it->split > 2) {
      out->films_unsplit++;
      continue;
    }
    if (it->label == 0 || it->label == 1) out->films_by_label[it->split][it->label]++;
    out->films_by_subtype[it->split][it->subtype >= 0 && it->subtype <= 2 ? it->subtype : 3]++;
  }
  for (int key = 0; key < 2; key++) {
    size_t *idx = sorted_by(ds, key);
    if (!idx) return ps_error(PS_ENOMEM, "audit: out of memory");
    for (size_t a = 0; a < ds->n;) {
      const char *k = key_of(&ds->items[idx[a]], key);
      unsigned mask = 0;
      size_t b = run_end(ds, idx, a, key, &mask);
      if (k[0]) {
        if (key == 0) {
          out->patients++;
          if (split_mask_leaks(mask)) out->patients_across_splits++, out->films_of_leaky_patients += b - a;
        } else {
          if (b - a > 1) out->duplicate_hashes++;
          if (split_mask_leaks(mask)) out->hashes_across_splits++;
        }
      }
      a = b;
    }
    free(idx);
  }
  return PS_OK;
}

/* {"patient_id" or "sha256": k, "splits": [...], "files": [{"path", "split"}...]} for items idx[a..b) */
static json_t *leak_entry(ps_dataset *ds, const size_t *idx, size_t a, size_t b, int key, unsigned mask) {
  json_t *splits = json_array(), *files = json_array();
  for (int s = 0; s < 3; s++)
    if (mask & (1u << s)) json_array_append_new(splits, json_string(ps_dataset_split_name(s)));
  for (size_t j = a; j < b; j++) {
    const ps_dataset_item *it = &ds->items[idx[j]];
    json_array_append_new(files, json_pack("{s:o, s:s}", "path", ps__json_str(it->rel_path), "split",
                                           ps_dataset_split_name(it->split)));
  }
  const ps_dataset_item *first = &ds->items[idx[a]];
  return json_pack("{s:o, s:o, s:o}", key ? "sha256" : "patient_id",
                   ps__json_str(key ? first->sha256 : first->patient_id), "splits", splits, "files", files);
}

static json_t *leak_json(ps_dataset *ds, const ps_leakage_report *r) {
  json_t *splits = json_object();
  for (int s = 0; s < 3; s++)
    json_object_set_new(splits, ps_dataset_split_name(s),
                        json_pack("{s:I, s:I, s:I, s:I, s:I}", "NORMAL", (json_int_t)r->films_by_label[s][0], "PNEUMONIA",
                                  (json_int_t)r->films_by_label[s][1], "BACTERIA", (json_int_t)r->films_by_subtype[s][1],
                                  "VIRUS", (json_int_t)r->films_by_subtype[s][2], "PNEUMONIA_UNKNOWN_SUBTYPE",
                                  (json_int_t)r->films_by_subtype[s][3]));
  json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:o}", "films", (json_int_t)r->films,
                        "patients", (json_int_t)r->patients, "groups", (json_int_t)r->groups, "films_unsplit",
                        (json_int_t)r->films_unsplit, "unhashed", (json_int_t)r->unhashed, "duplicate_hashes",
                        (json_int_t)r->duplicate_hashes, "patients_across_splits", (json_int_t)r->patients_across_splits,
                        "films_of_leaky_patients", (json_int_t)r->films_of_leaky_patients, "hashes_across_splits",
                        (json_int_t)r->hashes_across_splits, "leak_free",
                        r->patients_across_splits == 0 && r->hashes_across_splits == 0, "splits", splits);
  for (int key = 0; o && key < 2; key++) {
    json_t *detail = json_array();
    size_t *idx = sorted_by(ds, key);
    if (!idx) {
      json_decref(detail);
      json_decref(o);
      return NULL;
    }
    for (size_t a = 0; a < ds->n;) {
      const char *k = key_of(&ds->items[idx[a]], key);
      unsigned mask = 0;
      size_t b = run_end(ds, idx, a, key, &mask);
      if (k[0] && split_mask_leaks(mask)) json_array_append_new(detail, leak_entry(ds, idx, a, b, key, mask));
      a = b;
    }
    free(idx);
    json_object_set_new(o, key ? "hashes_across_splits_detail" : "patients_across_splits_detail", detail);
  }
  return o;
}

int ps_dataset_write_leakage_json(ps_dataset *ds, const char *path, ps_leakage_report *out) {
  if (!ds || !path) return ps_error(PS_EINVAL, "audit: NULL dataset or path");
  ps_leakage_report rep;
  int st = ps_dataset_audit(ds, &rep);
  if (st) return st;
  st = ps__json_write_atomic(path, 1, leak_json(ds, &rep));
  if (out) *out = rep;
  return st;
}
