/* shard_internal.h — shards of a whole-split command (evaluate --shard, audit --shard) and the
 * checks their merge makes (library-internal; in native/dataset, above native/train, native/gradcam and native/infer, which use it).
 *
 *   ps_shard_rows(total, unit, k, n, &lo, &hi);                 // rows [lo, hi) of shard k (0-based)
 *   json_t *run = json_pack("{s:s, s:i}", "split", "test", "batch", 32);   // what must agree
 *   ps_shard_check_outdir("evaluate", outdir, 1, "metrics.json");
 *   ps_shard_write(outdir, "evaluate", k, n, lo, hi, total, model, manifest, run, NULL);
 *   ...
 *   ps_shard_set set;                                           // the merge: shard.json of every folder
 *   ps_shard_read_set("evaluate", dirs, ndirs, &set);            // ordered 1..N, checked
 *
 * A shard folder holds the command's per-film file (predictions.csv, lung_focus.csv) and
 * shard.json: {"pneumoscope_shard": cmd, "shard": K (1-based), "shards": N, "rows": [lo, hi],
 * "total": rows of the whole split, "model", "manifest" (paths, for the merged output), "run": {...
 * model_sha256, manifest_sha256 and what the command says must agree ...}, "films": {... per-film
 * values the merge needs beyond the CSV, or absent ...}}. Reals are written to 17 significant digits
 * (they read back to the same double). */
#ifndef PS_SHARD_INTERNAL_H
#define PS_SHARD_INTERNAL_H

#include <jansson.h>

#include "ps_common.h"

#define PS_SHARD_FILE "shard.json"

/* Shard k (0-based) of n over total rows taken in whole units of `unit` rows (a forward batch;
 * 1: single rows): units [units * k / n, units * (k + 1) / n), in rows, so the shards 0..n-1 in
 * order hold every row once (classify's, evaluate's and audit's one block rule; ps_infer_shard_range
 * is this with unit 1). PS_EINVAL when k is not in [0, n). */
int ps_shard_rows(int total, int unit, int k, int n, int *lo, int *hi);

/* Before writing to outdir: a shard (sharded = 1) refuses a folder that holds a whole run's
 * `whole` file (metrics.json, summary.json), and a whole run or a merge (sharded = 0) refuses one
 * that holds shard.json, so neither is left beside the other's files or overwrites them. PS_EIO
 * with the reason. */
int ps_shard_check_outdir(const char *cmd, const char *outdir, int sharded, const char *whole);

/* Write outdir/shard.json (atomically). run: the object whose every member must agree between
 * shards (stolen); model_sha256 and manifest_sha256 (of the files' bytes) are added to it here.
 * films: per-film values for the merge (stolen; NULL: none). */
int ps_shard_write(const char *outdir, const char *cmd, int k, int n, int lo, int hi, int total, const char *model,
                   const char *manifest, json_t *run, json_t *films);

typedef struct ps_shard_set {
  int n;          /* shards (N) */
  const char **dirs; /* (n) in shard order 1..N: the folders as given (borrowed) */
  json_t **marks;    /* (n) their shard.json, same order (owned) */
} ps_shard_set;

/* Read shard.json from each of dirs (ndirs folders, any order) and check that they are the
 * shards 1..N of one cmd run: every folder readable and holding a shard.json of cmd, equal "run",
 * "shards" and "total", no shard twice, none missing, rows tiling [0, total). PS_EIO (a folder or
 * its shard.json unreadable), PS_EFORMAT (not a shard.json of cmd), PS_EINVAL (different runs, a
 * duplicate or a missing shard), each naming the folders. */
int ps_shard_read_set(const char *cmd, const char *const *dirs, int ndirs, ps_shard_set *out);
void ps_shard_set_free(ps_shard_set *s);
/* Rows [lo, hi) of shard i (0-based) of a set. */
void ps_shard_set_rows(const ps_shard_set *s, int i, int *lo, int *hi);

#endif
