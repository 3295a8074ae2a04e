/* Shards of a whole-split command and the checks of their merge (see shard_internal.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ps_dataset.h"
#include "ps_internal.h"
#include "shard_internal.h"

int ps_shard_rows(int total, int unit, int k, int n, int *lo, int *hi) {
  if (unit < 1 || total < 0) return ps_error(PS_EINVAL, "shard: %d rows in units of %d", total, unit);
  if (n < 1 || k < 0 || k >= n || !lo || !hi)
    return ps_error(PS_EINVAL, "shard %d of %d does not exist (shards are 1..%d)", k + 1, n, n);
  const int units = (int)(((int64_t)total + unit - 1) / unit);
  const int a = (int)((int64_t)units * k / n), b = (int)((int64_t)units * (k + 1) / n);
  *lo = (int)((int64_t)a * unit < total ? (int64_t)a * unit : total); /* a shard past the end is empty */
  *hi = (int)((int64_t)b * unit < total ? (int64_t)b * unit : total);
  return PS_OK;
}

int ps_shard_check_outdir(const char *cmd, const char *outdir, int sharded, const char *whole) {
  char *p = ps__path_join(outdir, sharded ? whole : PS_SHARD_FILE);
  if (!p) return ps_error(PS_ENOMEM, "%s: out of memory", cmd);
  struct stat sb;
  int there = stat(p, &sb) == 0;
  free(p);
  if (!there) return PS_OK;
  if (sharded)
    return ps_error(PS_EIO, "%s: %s holds a whole run's %s; write the shard to a folder of its own", cmd, outdir, whole);
  return ps_error(PS_EIO, "%s: %s holds a shard (%s); write the whole run or the merge to another folder", cmd, outdir,
                  PS_SHARD_FILE);
}

static int dump17(FILE *f, void *user) {
  if (json_dumpf((json_t *)user, f, JSON_INDENT(2) | JSON_REAL_PRECISION(17)) != 0 || fputc('\n', f) == EOF)
    return ps_error(PS_EIO, "shard: write error");
  return PS_OK;
}

int ps_shard_write(const char *outdir, const char *cmd, int k, int n, int lo, int hi, int total, const char *model,
                   const char *manifest, json_t *run, json_t *films) {
  char hm[65], hf[65];
  int st = PS_OK;
  char *path = ps__path_join(outdir, PS_SHARD_FILE);
  json_t *j = NULL;
  if (!path || !run) {
    st = ps_error(PS_ENOMEM, "%s: out of memory", cmd);
    goto done;
  }
  if ((st = ps_sha256_file(model, hm)) || (st = ps_sha256_file(manifest, hf))) goto done;
  json_object_set_new(run, "model_sha256", json_string(hm));
  json_object_set_new(run, "manifest_sha256", json_string(hf));
  j = json_pack("{s:s, s:i, s:i, s:[i, i], s:i, s:o, s:o, s:O}", "pneumoscope_shard", cmd, "shard", k + 1, "shards", n,
                "rows", lo, hi, "total", total, "model", ps__json_str(model), "manifest", ps__json_str(manifest), "run",
                run);
  if (!j) {
    st = ps_error(PS_ENOMEM, "%s: out of memory", cmd);
    goto done;
  }
  if (films) json_object_set(j, "films", films);
  st = ps__write_atomic(path, 1, dump17, j);
done:
  json_decref(j), json_decref(run), json_decref(films);
  free(path);
  return st;
}

void ps_shard_set_free(ps_shard_set *s) {
  if (!s) return;
  for (int i = 0; s->marks && i < s->n; i++) json_decref(s->marks[i]);
  free(s->marks), free((void *)s->dirs);
  memset(s, 0, sizeof *s);
}

void ps_shard_set_rows(const ps_shard_set *s, int i, int *lo, int *hi) {
  json_t *r = json_object_get(s->marks[i], "rows");
  *lo = (int)json_integer_value(json_array_get(r, 0));
  *hi = (int)json_integer_value(json_array_get(r, 1));
}

/* A value for a message: compact JSON (reals to `digits` significant digits), at most 80 characters. */
static void shown(json_t *v, int digits, char *buf, size_t cap) {
  char *s = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(digits)) : NULL;
  snprintf(buf, cap, "%.80s%s", s ? s : "(none)", s && strlen(s) > 80 ? "..." : "");
  free(s);
}

/* PS_EINVAL naming the first member of run in which a and b (shards of dirs da and db) differ. */
static int different_runs(const char *cmd, json_t *a, json_t *b, const char *da, const char *db) {
  json_t *ra = json_object_get(a, "run"), *rb = json_object_get(b, "run");
  const char *key = "shards";
  json_t *va = json_object_get(a, key), *vb = json_object_get(b, key);
  if (json_equal(va, vb)) key = "total", va = json_object_get(a, key), vb = json_object_get(b, key);
  if (json_equal(va, vb)) {
    const char *k;
    json_t *v;
    json_object_foreach(ra, k, v) if (!json_equal(v, json_object_get(rb, k))) break;
    if (!k) json_object_foreach(rb, k, v) if (!json_object_get(ra, k)) break;
    key = k ? k : "run", va = k ? json_object_get(ra, k) : ra, vb = k ? json_object_get(rb, k) : rb;
  }
  char sa[96], sb[96];
  shown(va, 15, sa, sizeof sa), shown(vb, 15, sb, sizeof sb);
  if (!strcmp(sa, sb)) shown(va, 17, sa, sizeof sa), shown(vb, 17, sb, sizeof sb); /* differ past 15 digits */
  return ps_error(PS_EINVAL, "%s: %s and %s are shards of different runs: %s is %s in the first, %s in the second", cmd,
                  da, db, key, sa, sb);
}

/* shard.json of dir, checked to be one of cmd's (PS_EIO, PS_EFORMAT). */
static int read_mark(const char *cmd, const char *dir, json_t **out) {
  *out = NULL;
  struct stat sb;
  if (stat(dir, &sb) != 0) return ps_error(PS_EIO, "%s: cannot read shard folder %s: %s", cmd, dir, strerror(errno));
  if (!S_ISDIR(sb.st_mode)) return ps_error(PS_EIO, "%s: shard folder %s is not a folder", cmd, dir);
  char *p = ps__path_join(dir, PS_SHARD_FILE);
  if (!p) return ps_error(PS_ENOMEM, "%s: out of memory", cmd);
  json_error_t je;
  json_t *m = json_load_file(p, JSON_REJECT_DUPLICATES, &je);
  int st = PS_OK;
  if (!m && stat(p, &sb) != 0 && errno == ENOENT) {
    st = ps_error(PS_EIO, "%s: %s holds no %s: not a folder written by `%s --shard`", cmd, dir, PS_SHARD_FILE, cmd);
  } else if (!m && access(p, R_OK) != 0) {
    st = ps_error(PS_EIO, "%s: cannot read %s: %s", cmd, p, strerror(errno));
  } else if (!m) {
    st = ps_error(PS_EFORMAT, "%s: %s: %s", cmd, p, je.text);
  } else {
    const char *tag = json_string_value(json_object_get(m, "pneumoscope_shard"));
    json_t *rows = json_object_get(m, "rows");
    int ok = json_is_integer(json_object_get(m, "shard")) && json_is_integer(json_object_get(m, "shards")) &&
             json_is_integer(json_object_get(m, "total")) && json_array_size(rows) == 2 &&
             json_is_integer(json_array_get(rows, 0)) && json_is_integer(json_array_get(rows, 1)) &&
             json_is_object(json_object_get(m, "run"));
    if (tag && strcmp(tag, cmd))
      st = ps_error(PS_EFORMAT, "%s: %s is the shard.json of `%s --shard`, not of `%s --shard`", cmd, p, tag, cmd);
    else if (!tag || !ok)
      st = ps_error(PS_EFORMAT, "%s: %s is not the shard.json of `%s --shard` (members missing)", cmd, p, cmd);
  }
  free(p);
  if (st) json_decref(m);
  else *out = m;
  return st;
}

int ps_shard_read_set(const char *cmd, const char *const *dirs, int ndirs, ps_shard_set *out) {
  memset(out, 0, sizeof *out);
  if (!dirs || ndirs < 1) return ps_error(PS_EINVAL, "%s: no shard folders to merge", cmd);
  json_t **got = calloc((size_t)ndirs, sizeof *got);
  int st = PS_OK, N = 0;
  if (!got) return ps_error(PS_ENOMEM, "%s: out of memory", cmd);
  for (int i = 0; i < ndirs; i++) {
    if ((st = read_mark(cmd, dirs[i], &got[i]))) goto done;
    if (i == 0) N = (int)json_integer_value(json_object_get(got[0], "shards"));
    else if (!json_equal(json_object_get(got[i], "shards"), json_object_get(got[0], "shards")) ||
             !json_equal(json_object_get(got[i], "total"), json_object_get(got[0], "total")) ||
             !json_equal(json_object_get(got[i], "run"), json_object_get(got[0], "run"))) {
      st = different_runs(cmd, got[0], got[i], dirs[0], dirs[i]);
      goto done;
    }
    int k = (int)json_integer_value(json_object_get(got[i], "shard"));
    if (N < 1 || k < 1 || k > N) {
      st = ps_error(PS_EFORMAT, "%s: %s/%s names shard %d of %d", cmd, dirs[i], PS_SHARD_FILE, k, N);
      goto done;
    }
  }
  out->n = N;
  out->marks = calloc((size_t)N, sizeof *out->marks);
  out->dirs = calloc((size_t)N, sizeof *out->dirs);
  if (!out->marks || !out->dirs) {
    st = ps_error(PS_ENOMEM, "%s: out of memory", cmd);
    goto done;
  }
  for (int i = 0; i < ndirs; i++) {
    int k = (int)json_integer_value(json_object_get(got[i], "shard")) - 1;
    if (out->marks[k]) {
      st = ps_error(PS_EINVAL, "%s: shard %d/%d is given twice: %s and %s", cmd, k + 1, N, out->dirs[k], dirs[i]);
      goto done;
    }
    out->marks[k] = got[i], out->dirs[k] = dirs[i], got[i] = NULL;
  }
  int total = (int)json_integer_value(json_object_get(out->marks[0], "total")), next = 0, missing = 0;
  char list[256] = "";
  for (int k = 0; k < N; k++) {
    if (!out->marks[k]) {
      size_t l = strlen(list);
      if (l < sizeof list - 16) snprintf(list + l, sizeof list - l, "%s%d", missing ? ", " : "", k + 1);
      missing++;
    }
  }
  if (missing) {
    st = ps_error(PS_EINVAL, "%s: %d of %d shards missing (shard %s): every folder of shards 1..%d is needed", cmd,
                  missing, N, list, N);
    goto done;
  }
  for (int k = 0; k < N; k++) {
    int lo, hi;
    ps_shard_set_rows(out, k, &lo, &hi);
    if (lo != next || hi < lo || (k == N - 1 && hi != total)) {
      st = ps_error(PS_EFORMAT, "%s: shard %d/%d (%s) holds rows [%d, %d) of %d; rows from %d on were expected", cmd,
                    k + 1, N, out->dirs[k], lo, hi, total, next);
      goto done;
    }
    next = hi;
  }
done:
  for (int i = 0; i < ndirs; i++) json_decref(got[i]);
  free(got);
  if (st) ps_shard_set_free(out);
  return st;
}
