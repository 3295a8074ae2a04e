/* pneumoscope split — scan a film tree, split it by patient (leak-free), write manifest.csv and
 * leakage.json, optionally materialise {train,val,test}/{CLASS} symlink folders; or audit any manifest. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "ps_dataset.h"

const char ps_cli_split_help[] = "split films by patient into train/val/test (manifest.csv, leakage audit, folders)";

static const char usage_text[] =
    "usage: pneumoscope split SRC -o OUTDIR [--fractions 0.7,0.15,0.15] [--seed N]\n"
    "                         [--task binary|multiclass] [--materialize[=DIR]] [--labels CSV]\n"
    "                         [--force] [--no-hash]\n"
    "       pneumoscope split --audit-only MANIFEST|FOLDER [-o OUTDIR]\n\n"
    "SRC: the Kaggle chest_xray/ tree (train/val/test pooled and split again), any tree with\n"
    "NORMAL/PNEUMONIA (or BACTERIA/VIRUS) folders, or a folder of films with --labels CSV\n"
    "(columns path|file|SOPInstanceUID, label[, subtype][, patient_id]).\n"
    "A patient's films and byte-identical films always land in one split; the split is stratified\n"
    "by class (--task) and the same seed gives the same manifest on any machine.\n"
    "Writes OUTDIR/manifest.csv (path,label,subtype,patient_id,split,sha256; never overwritten\n"
    "without --force) and OUTDIR/leakage.json. --materialize builds OUTDIR/<task>/ (or DIR) as\n"
    "{train,val,test}/{CLASS}/ symlinks; the source is never modified. OUTDIR may not lie in SRC.\n"
    "--audit-only checks an existing manifest (or a folder's own train/val/test split) for patients\n"
    "and identical films in more than one split; exit status 3 when it finds leakage.\n";

static void print_summary(FILE *f, const ps_leakage_report *r) {
  fprintf(f, "films %zu, patients %zu, groups (patient + identical bytes) %zu, duplicate sha256 %zu\n", r->films,
          r->patients, r->groups, r->duplicate_hashes);
  fprintf(f, "%-6s %8s %10s %9s %6s\n", "split", "NORMAL", "PNEUMONIA", "BACTERIA", "VIRUS");
  for (int s = 0; s < 3; s++)
    fprintf(f, "%-6s %8zu %10zu %9zu %6zu\n", ps_dataset_split_name(s), r->films_by_label[s][0], r->films_by_label[s][1],
            r->films_by_subtype[s][1], r->films_by_subtype[s][2]);
  if (r->films_unsplit) fprintf(f, "films without a split: %zu\n", r->films_unsplit);
  fprintf(f, "leakage: %zu patients in more than one split (%zu films), %zu identical films across splits%s\n",
          r->patients_across_splits, r->films_of_leaky_patients, r->hashes_across_splits,
          r->unhashed ? " (some films not hashed)" : "");
}

/* Absolute form of a path that may not exist: realpath of its deepest existing ancestor + the rest. */
static int resolve(const char *path, char out[PATH_MAX]) {
  char tmp[PATH_MAX], rest[PATH_MAX] = "";
  if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) return -1;
  for (;;) {
    if (realpath(tmp[0] ? tmp : ".", out)) break;
    char *slash = strrchr(tmp, '/');
    char seg[PATH_MAX * 2];
    snprintf(seg, sizeof seg, "%s%s%s", slash ? slash + 1 : tmp, rest[0] ? "/" : "", rest);
    if (strlen(seg) >= sizeof rest) return -1;
    memcpy(rest, seg, strlen(seg) + 1);
    if (!slash) tmp[0] = '\0';
    else if (slash == tmp) tmp[1] = '\0';
    else *slash = '\0';
  }
  if (rest[0]) {
    size_t l = strlen(out);
    snprintf(out + l, PATH_MAX - l, "%s%s", out[l - 1] == '/' ? "" : "/", rest);
  }
  return 0;
}

static int inside(const char *child, const char *parent) {
  size_t n = strlen(parent);
  return !strncmp(child, parent, n) && (child[n] == '/' || child[n] == '\0' || (n == 1 && parent[0] == '/'));
}

/* 1 when path exists and is not an empty folder. */
static int rmdir_probe_nonempty(const char *path) {
  DIR *d = opendir(path);
  if (!d) return 1;
  struct dirent *e;
  int n = 0;
  while ((e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  closedir(d);
  return n > 0;
}

static int audit_only(const char *what, const char *outdir) {
  struct stat s;
  ps_dataset *ds = NULL;
  int st;
  if (stat(what, &s) == 0 && S_ISDIR(s.st_mode)) {
    /* a folder: audit its own train/val/test layout (e.g. the original Kaggle split) */
    st = ps_dataset_scan(what, NULL, &ds);
    if (st) return ps_cli_fail("split", what, st);
    if (ps_dataset_use_source_split(ds) <= 0) {
      ps_dataset_free(ds);
      fprintf(stderr, "pneumoscope split: %s has no train/val/test folders to audit\n", what);
      return 1;
    }
  } else {
    st = ps_dataset_read_manifest(what, &ds);
    if (st) return ps_cli_fail("split", what, st);
  }
  ps_leakage_report r;
  if (outdir) {
    char p[PATH_MAX];
    if ((st = ps_mkdir_p("split", outdir))) {
      ps_dataset_free(ds);
      fprintf(stderr, "pneumoscope %s\n", ps_last_error());
      return 1;
    }
    snprintf(p, sizeof p, "%s/leakage.json", outdir);
    st = ps_dataset_write_leakage_json(ds, p, &r);
    if (st == PS_OK) printf("wrote %s\n", p);
  } else {
    st = ps_dataset_audit(ds, &r);
  }
  ps_dataset_free(ds);
  if (st) return ps_cli_fail("split", "audit", st);
  print_summary(stdout, &r);
  return (r.patients_across_splits || r.hashes_across_splits) ? 3 : 0;
}

int ps_cli_split(int argc, char **argv) {
  static const ps_cli_choice tasks[] = {{"binary", PS_TASK_BINARY}, {"multiclass", PS_TASK_MULTICLASS}, {NULL, 0}};
  const char *src = NULL, *outdir = NULL, *labels = NULL, *mat_dir = NULL, *audit = NULL, *fractions = NULL;
  const char *seed = NULL;
  int task = PS_TASK_BINARY, force = 0, no_hash = 0;
  const ps_cli_option options[] = {{"out", 'o', PS_OPT_STRING, &outdir},
                                   {"fractions", 0, PS_OPT_STRING, &fractions},
                                   {"seed", 0, PS_OPT_STRING, &seed},
                                   {"task", 0, PS_OPT_CHOICE, &task, .choices = tasks},
                                   {"labels", 0, PS_OPT_STRING, &labels},
                                   {"materialize", 0, PS_OPT_OPTIONAL, &mat_dir},
                                   {"audit-only", 0, PS_OPT_STRING, &audit},
                                   {"force", 0, PS_OPT_FLAG, &force},
                                   {"no-hash", 0, PS_OPT_FLAG, &no_hash},
                                   {0}};
  int nsrc = 1, rc = ps_cli_parse("split", usage_text, options, argc, argv, &src, &nsrc);
  if (rc >= 0) return rc;
  ps_split_opts so = {{0.70, 0.15, 0.15}, 0, task};
  if (fractions) {
    const char *p = fractions;
    char *end;
    for (int k = 0; k < 3; k++, p = end + 1) {
      errno = 0;
      so.fractions[k] = strtod(p, &end);
      if (end == p || errno || *end != (k < 2 ? ',' : '\0'))
        return fprintf(stderr, "pneumoscope split: --fractions needs three numbers like 0.7,0.15,0.15, got '%s'\n",
                       fractions),
               2;
    }
  }
  if (seed) {
    char *end;
    errno = 0;
    so.seed = strtoull(seed, &end, 10);
    if (!*seed || *end || errno || seed[0] == '-')
      return fprintf(stderr, "pneumoscope split: --seed needs a non-negative integer, got '%s'\n", seed), 2;
  }
  int materialize = mat_dir != NULL;
  if (mat_dir && !*mat_dir) mat_dir = NULL; /* the default folder */
  if (audit) return audit_only(audit, outdir);
  if (!src || !outdir) {
    fputs(usage_text, stderr);
    return 2;
  }
  char asrc[PATH_MAX], aout[PATH_MAX], amat[PATH_MAX];
  if (!realpath(src, asrc)) {
    fprintf(stderr, "pneumoscope split: %s: %s\n", src, strerror(errno));
    return 1;
  }
  if (resolve(outdir, aout) != 0 || inside(aout, asrc)) {
    fprintf(stderr, "pneumoscope split: the output folder %s lies inside the source %s (refused: never write into the films' tree)\n",
            outdir, src);
    return 1;
  }
  char def[PATH_MAX];
  if (materialize) {
    if (!mat_dir) {
      snprintf(def, sizeof def, "%s/%s", outdir, so.task == PS_TASK_MULTICLASS ? "multiclass" : "binary");
      mat_dir = def;
    }
    if (resolve(mat_dir, amat) != 0 || inside(amat, asrc)) {
      fprintf(stderr, "pneumoscope split: the materialize folder %s lies inside the source %s (refused)\n", mat_dir, src);
      return 1;
    }
  }
  if (materialize) { /* refuse a foreign non-empty target before writing anything */
    char marker[PATH_MAX + 32];
    struct stat ms;
    snprintf(marker, sizeof marker, "%s/.pneumoscope-materialized", amat);
    if (stat(amat, &ms) == 0 && access(marker, F_OK) != 0 && rmdir_probe_nonempty(amat)) {
      fprintf(stderr, "pneumoscope split: %s is not empty and was not made by pneumoscope (refused; choose a new folder)\n",
              mat_dir);
      return 1;
    }
  }
  char manifest[PATH_MAX], leak[PATH_MAX];
  snprintf(manifest, sizeof manifest, "%s/manifest.csv", outdir);
  snprintf(leak, sizeof leak, "%s/leakage.json", outdir);
  if (!force && access(manifest, F_OK) == 0) {
    fprintf(stderr, "pneumoscope split: %s already exists (not overwritten; use --force)\n", manifest);
    return 1;
  }
  ps_scan_opts sc = {0};
  sc.labels_csv = labels;
  sc.no_hash = no_hash;
  ps_dataset *ds = NULL;
  int st = ps_dataset_scan(src, &sc, &ds);
  if (st) return ps_cli_fail("split", src, st);
  if (ps_dataset_use_source_split(ds) > 0) { /* e.g. Kaggle's own train/val/test: say how it leaks */
    ps_leakage_report orig;
    if (ps_dataset_audit(ds, &orig) == PS_OK)
      printf("the source's own train/val/test folders: %zu patients in more than one split, %zu identical films across "
             "splits (pooled and split again below)\n",
             orig.patients_across_splits, orig.hashes_across_splits);
  }
  if ((st = ps_dataset_split(ds, &so)) != PS_OK) {
    ps_dataset_free(ds);
    return ps_cli_fail("split", src, st);
  }
  if ((st = ps_mkdir_p("split", outdir))) {
    ps_dataset_free(ds);
    fprintf(stderr, "pneumoscope %s\n", ps_last_error());
    return 1;
  }
  ps_leakage_report r;
  if ((st = ps_dataset_write_manifest(ds, manifest, force)) != PS_OK ||
      (st = ps_dataset_write_leakage_json(ds, leak, &r)) != PS_OK) {
    ps_dataset_free(ds);
    return ps_cli_fail("split", outdir, st);
  }
  printf("wrote %s\nwrote %s\n", manifest, leak);
  if (materialize) {
    size_t made = 0;
    st = ps_dataset_materialize(ds, mat_dir, so.task, &made);
    if (st) {
      ps_dataset_free(ds);
      return ps_cli_fail("split", mat_dir, st);
    }
    printf("materialized %zu symlinks under %s\n", made, mat_dir);
  }
  ps_dataset_free(ds);
  printf("seed %llu, fractions %.4g/%.4g/%.4g, stratified by %s class\n", (unsigned long long)so.seed, so.fractions[0], so.fractions[1],
         so.fractions[2], so.task == PS_TASK_MULTICLASS ? "multiclass" : "binary");
  print_summary(stdout, &r);
  if (r.patients_across_splits || r.hashes_across_splits) {
    fprintf(stderr, "pneumoscope split: internal error: the split leaks (see %s)\n", leak);
    return 3;
  }
  return 0;
}
