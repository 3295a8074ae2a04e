/* ps_dataset.h — chest-film datasets: scan, labels, patient ids, leakage-free split, manifest, audit.
 *
 *   ps_dataset *ds = NULL;
 *   ps_split_opts so = {0};              // 0.70/0.15/0.15, seed 0, stratified by binary label
 *   so.seed = 42;
 *   if (ps_dataset_scan("chest_xray", NULL, &ds) == PS_OK &&
 *       ps_dataset_split(ds, &so) == PS_OK &&
 *       ps_dataset_write_manifest(ds, "out/manifest.csv", 0) == PS_OK) {
 *     ps_leakage_report rep;
 *     ps_dataset_audit(ds, &rep);        // rep.patients_across_splits == 0 for our split
 *     for (size_t i = 0; i < ps_dataset_size(ds); i++) {
 *       const ps_dataset_item *it = ps_dataset_item_at(ds, i);
 *       if (it->split == PS_SPLIT_TRAIN) use(it->path, ps_dataset_item_class(it, PS_TASK_BINARY));
 *     }
 *   }
 *   ps_dataset_free(ds);
 *
 * Sources ps_dataset_scan understands (recursively, files sorted byte-wise by relative path):
 *   - the Kaggle layout chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/ — all existing splits are
 *     pooled (item->source_split remembers where each film was) and split again;
 *   - any class-per-folder tree: a folder named NORMAL, PNEUMONIA, BACTERIA or VIRUS (any case)
 *     labels every film below it (the innermost class folder wins);
 *   - a folder of films (DICOM included) plus a labels CSV (ps_scan_opts.labels_csv) with a header
 *     naming the columns: path|file|filename|sop_instance_uid|SOPInstanceUID, label|class
 *     [, subtype][, patient_id]. Rows match a film by its path relative to the root, by file name,
 *     or by DICOM SOPInstanceUID. A labels CSV entry overrides a folder label.
 * Films are *.jpeg, *.jpg, *.png, *.dcm, *.dicom (any case); with a labels CSV also any file the CSV
 * names. Hidden files and folders (".x") are skipped; symlinked folders are not followed.
 *
 * Labels: binary label NORMAL(0)/PNEUMONIA(1); subtype NORMAL/BACTERIA/VIRUS from a BACTERIA/VIRUS
 * folder, else from the file name ("_bacteria_", "_virus_", any case), else PS_SUBTYPE_UNKNOWN for
 * a pneumonia film (such films are left out of multiclass materialisation, with a warning).
 *
 * Patient id (ps_dataset_patient_id_from_name): "person123_bacteria_456.jpeg" -> "person123";
 * "IM-0117-0001.jpeg" -> "IM-0117"; "NORMAL2-IM-0435-0001.jpeg" -> "NORMAL2-IM-0435";
 * "NORMAL2-IM-0416-0001-0002.jpeg" -> "NORMAL2-IM-0416"; for DICOM the PatientID tag (0010,0020);
 * a labels CSV patient_id column wins over both; otherwise the file name without extension (each
 * such film is its own patient).
 *
 * Split (ps_dataset_split): films are grouped by patient AND by identical bytes (same sha256),
 * union-find, so no patient and no duplicated film crosses splits. Each group is stratified by its
 * majority class (for opts.task), ties broken by the class of its first film in path order. Within a
 * stratum, groups (ordered by their first path) are shuffled with xoshiro256** seeded through
 * splitmix64(seed), then walked in order: a group goes to the split whose cumulative film-count
 * interval [0, f0*T), [f0*T, (f0+f1)*T), [.., T) holds the midpoint of the group's films, T being the
 * stratum's film count. Same files + same seed + same fractions -> the same split on any machine.
 *
 * Manifest CSV (RFC 4180 quoting, "\n" line ends, header first):
 *   path,label,subtype,patient_id,split,sha256
 * path is absolute when written by a scan; the reader resolves relative paths against the manifest's
 * folder. The reader also accepts the column aliases file/class (e.g. ../shared/data/kaggle/manifest.csv),
 * any column order, extra columns, CRLF, and a missing split column (then every film is NONE).
 */
#ifndef PS_DATASET_H
#define PS_DATASET_H

#include "ps_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { PS_LABEL_UNKNOWN = -1, PS_LABEL_NORMAL = 0, PS_LABEL_PNEUMONIA = 1 } ps_label;
typedef enum {
  PS_SUBTYPE_UNKNOWN = -1,
  PS_SUBTYPE_NORMAL = 0,
  PS_SUBTYPE_BACTERIA = 1,
  PS_SUBTYPE_VIRUS = 2
} ps_subtype;
typedef enum { PS_SPLIT_NONE = -1, PS_SPLIT_TRAIN = 0, PS_SPLIT_VAL = 1, PS_SPLIT_TEST = 2 } ps_split;
/* Binary: NORMAL/PNEUMONIA (class = label). Multiclass: NORMAL/BACTERIA/VIRUS (class = subtype). */
/* ps_task (PS_TASK_BINARY, PS_TASK_MULTICLASS) is defined once, in ps_common.h. */

typedef struct ps_dataset ps_dataset;

/* One film. All strings are owned by the dataset and live until ps_dataset_free. */
typedef struct ps_dataset_item {
  const char *path;       /* file to open: absolute after a scan; manifest paths resolved */
  const char *rel_path;   /* relative to the scanned root ("NORMAL/IM-0117-0001.jpeg"); manifest: as written */
  const char *patient_id; /* never NULL or "" */
  int label;              /* ps_label */
  int subtype;            /* ps_subtype */
  int split;              /* ps_split: PS_SPLIT_NONE until ps_dataset_split (or from a manifest) */
  int source_split;       /* train/val/test folder the scan found it under (Kaggle layout), else NONE */
  int group;              /* leakage group (patient ∪ identical bytes) after split/audit, else -1 */
  char sha256[65];        /* lowercase hex of the file bytes; "" when not hashed */
} ps_dataset_item;

typedef struct ps_scan_opts {
  const char *labels_csv; /* optional labels CSV (see top); NULL: folder names only */
  int no_hash;            /* 1: skip sha256 (faster; no duplicate grouping, no hash audit) */
  int threads;            /* hashing threads; 0: ps_default_threads() (at most 8) */
  ps_progress_fn progress; /* optional, called while hashing; non-zero return cancels */
  void *progress_user;
} ps_scan_opts;

typedef struct ps_split_opts {
  double fractions[3]; /* train, val, test; all 0 -> 0.70, 0.15, 0.15. Must be >= 0, sum to 1 (+-1e-6) */
  uint64_t seed;
  int task;            /* ps_task to stratify by (0: binary label) */
} ps_split_opts;

typedef struct ps_leakage_report {
  size_t films, patients, groups;        /* groups: patient ∪ identical-bytes components */
  size_t films_by_label[3][2];           /* [train/val/test][NORMAL, PNEUMONIA] */
  size_t films_by_subtype[3][4];         /* [train/val/test][NORMAL, BACTERIA, VIRUS, unknown] */
  size_t films_unsplit;                  /* split == NONE */
  size_t patients_across_splits;         /* patients with films in more than one split */
  size_t films_of_leaky_patients;        /* films belonging to those patients */
  size_t hashes_across_splits;           /* distinct sha256 values present in more than one split */
  size_t duplicate_hashes;               /* distinct sha256 values carried by more than one film */
  size_t unhashed;                       /* films without a sha256 (not audited by bytes) */
} ps_leakage_report;

/* ---- building a dataset -------------------------------------------------------------------- */
/* Scan a folder tree (see top). PS_ENOTFOUND when root is missing or holds no labelled film. */
PS_API int ps_dataset_scan(const char *root, const ps_scan_opts *opts, ps_dataset **out);
/* Read a manifest CSV. Bad rows fail with PS_EFORMAT naming the file and line. */
PS_API int ps_dataset_read_manifest(const char *path, ps_dataset **out);
PS_API void ps_dataset_free(ps_dataset *ds);

PS_API size_t ps_dataset_size(const ps_dataset *ds);
PS_API const ps_dataset_item *ps_dataset_item_at(const ps_dataset *ds, size_t i); /* NULL when out of range */
/* Root given to ps_dataset_scan (absolute), or the manifest's folder. Borrowed. */
PS_API const char *ps_dataset_root(const ps_dataset *ds);

/* Class index of a film for a task (binary: label; multiclass: subtype), -1 when unknown. */
PS_API int ps_dataset_item_class(const ps_dataset_item *it, ps_task task);
PS_API int ps_dataset_num_classes(ps_task task);                 /* 2 or 3 */
PS_API const char *ps_dataset_class_name(ps_task task, int cls); /* "NORMAL", "PNEUMONIA", "BACTERIA", "VIRUS"; "?" */
PS_API const char *ps_dataset_split_name(int split);             /* "train", "val", "test", "" for NONE */
PS_API int ps_dataset_parse_split(const char *s);                /* inverse, any case; PS_SPLIT_NONE when not one */
PS_API const char *ps_dataset_label_name(int label);             /* "NORMAL", "PNEUMONIA", "" */
PS_API const char *ps_dataset_subtype_name(int subtype);         /* "NORMAL", "BACTERIA", "VIRUS", "" */

/* ---- split, manifest, audit, folders --------------------------------------------------------- */
/* Assign item->split to every film (opts NULL: defaults). Fails with PS_EINVAL on bad fractions or
 * when opts->task is multiclass and a film has no known subtype. */
PS_API int ps_dataset_split(ps_dataset *ds, const ps_split_opts *opts);
/* Copy each film's source_split (the train/val/test folder a scan found it in) into its split, e.g.
 * to audit the Kaggle set's own split. Returns the number of films that had one (films without one
 * get PS_SPLIT_NONE); negative status on NULL. */
PS_API int ps_dataset_use_source_split(ps_dataset *ds);
/* Write the manifest atomically (temp file + rename). An existing file is refused (PS_EINVAL)
 * unless force; forced overwrites also go through the temp file. */
PS_API int ps_dataset_write_manifest(const ps_dataset *ds, const char *path, int force);
/* Leakage audit of the current split assignment (also sets item->group). Never fails on leakage:
 * the counts say it. PS_EINVAL only for NULL arguments. */
PS_API int ps_dataset_audit(ps_dataset *ds, ps_leakage_report *out);
/* Audit and write leakage.json atomically: the counts plus every leaking patient (with its splits
 * and files) and every sha256 present in more than one split (with its files). Overwrites. */
PS_API int ps_dataset_write_leakage_json(ps_dataset *ds, const char *path, ps_leakage_report *out);
/* Build dir/{train,val,test}/{CLASS}/<file name> as symlinks to the films (classes for task).
 * Never moves, copies over or deletes a user file: dir must not exist, be empty, or be a folder
 * this function made before (it holds ".pneumoscope-materialized"); in the last case the symlinks
 * in its <split>/<class> folders are replaced and nothing else is touched. dir may not lie inside a class folder of the source tree. Name clashes
 * (same file name in one class of one split) get "-2", "-3" ... before the extension. Films with
 * no split or no class for the task are skipped (logged). *made: symlinks created (may be NULL). */
PS_API int ps_dataset_materialize(const ps_dataset *ds, const char *dir, ps_task task, size_t *made);

/* ---- building blocks --------------------------------------------------------------------------- */
/* Patient id from a file name or path (see top); always writes something (the stem as fallback).
 * Returns 1 when a known pattern matched, 0 for the stem fallback, PS_EINVAL when cap is too small. */
PS_API int ps_dataset_patient_id_from_name(const char *name, char *out, size_t cap);
/* PS_SUBTYPE_BACTERIA / PS_SUBTYPE_VIRUS from "_bacteria_" / "_virus_" in a file name, else UNKNOWN. */
PS_API int ps_dataset_subtype_from_name(const char *name);

/* SHA-256 (FIPS 180-4, through nettle) of a file's bytes to 64 lowercase hex digits + NUL. PS_EIO naming the file on failure. */
PS_API int ps_sha256_file(const char *path, char hex[65]);

#ifdef __cplusplus
}
#endif
#endif
