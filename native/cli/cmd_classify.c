/* pneumoscope classify — label films (files or folders) with a ResNet18 model: one ps_infer_run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#ifdef PS_HAVE_INFER
#include "ps_infer.h"
#include "ps_lung.h"
#endif

const char ps_cli_classify_help[] = "label films (files or folders) NORMAL/PNEUMONIA or NORMAL/BACTERIA/VIRUS";

static void usage(FILE *f) {
  fputs("usage: pneumoscope classify [--model M] [--json|--csv] [--device cpu|cuda|auto] [--threads N]\n"
        "                            [--batch B] PATH...\n"
        "  Classifies every film (PNG, JPEG, DICOM by content) in the files and folders given\n"
        "  (folders recursively; .txt/.csv/.json and other clearly non-film files are skipped).\n"
        "  --model M     binary or 3class (the bundled NORMAL/PNEUMONIA and NORMAL/BACTERIA/VIRUS\n"
        "                models) or a .safetensors file (default: $PNEUMOSCOPE_MODEL, else binary)\n"
        "  --json        JSON array: file, label, probabilities, threshold, in_distribution (true, false,\n"
        "                or null for a model without an out-of-distribution detector), ood_score,\n"
        "                ood_reason (when flagged), DICOM identifiers; for a model\n"
        "                trained with --roi lungs or lungmask also \"roi\": [x0, y0, x1, y1] (fractions of the film) and\n"
        "                \"roi_fallback\" (true when no plausible lung box was found: the whole film was used)\n"
        "  --csv         the same as CSV (header line first)\n"
        "  --device D    cpu, cuda or auto (default auto: CUDA when available)\n"
        "  --threads N   CPU threads for decoding and for libtorch (default: all available)\n"
        "  --batch B     films per forward pass (default 16 on CPU, 32 on CUDA)\n"
        "  A film that cannot be read is reported (stderr and an error row) and skipped.\n"
        "  Exit status: 0 all films classified, 1 any film failed or the model could not run,\n"
        "  2 bad usage.\n",
        f);
}

#ifdef PS_HAVE_INFER

typedef enum { OUT_TABLE, OUT_JSON, OUT_CSV } out_kind;

typedef struct out_ctx {
  out_kind kind;
  const ps_model *model;
  const char *model_path;
  int count;
} out_ctx;

static int has_dicom_ids(const ps_film_meta *m) {
  return m && m->format == PS_FORMAT_DICOM;
}

static int on_result(const ps_infer_result *r, void *user) {
  out_ctx *o = user;
  const ps_model_meta *mm = ps_model_meta_get(o->model);
  int K = r->num_classes;
  FILE *f = stdout;
  int binary = mm->task == PS_TASK_BINARY;
  int lungs = mm->roi != PS_ROI_FILM; /* the box the model saw is reported (film models: unchanged output) */
  if (r->status != PS_OK) fprintf(stderr, "pneumoscope classify: %s\n", r->error);
  if (o->kind == OUT_JSON) {
    fputs(o->count ? ",\n  {" : "\n  {", f);
    fputs("\"file\":", f);
    ps_cli_json_string(f, r->file);
    if (r->status != PS_OK) {
      fputs(",\"label\":null,\"error\":", f);
      ps_cli_json_string(f, r->error);
      fputs("}", f);
    } else {
      fputs(",\"label\":", f);
      ps_cli_json_string(f, r->label_name);
      fputs(",\"probabilities\":{", f);
      for (int k = 0; k < K; k++) {
        if (k) fputc(',', f);
        ps_cli_json_string(f, mm->classes[k]);
        fprintf(f, ":%.9g", r->probs[k]);
      }
      fputs("},\"threshold\":", f);
      if (binary) fprintf(f, "%.9g", mm->threshold);
      else fputs("null", f);
      if (lungs)
        fprintf(f, ",\"roi\":[%.6f,%.6f,%.6f,%.6f],\"roi_fallback\":%s", r->roi[0], r->roi[1], r->roi[2], r->roi[3],
                r->roi_fallback ? "true" : "false");
      fprintf(f, ",\"in_distribution\":%s,\"ood_score\":",
              r->in_distribution < 0 ? "null" : r->in_distribution ? "true" : "false");
      if (isfinite(r->ood_score)) fprintf(f, "%.6g", r->ood_score);
      else fputs("null", f);
      if (r->ood_reason[0]) {
        fputs(",\"ood_reason\":", f);
        ps_cli_json_string(f, r->ood_reason);
      }
      const ps_film_meta *m = r->meta;
      if (has_dicom_ids(m)) {
        const char *keys[] = {"PatientID", "StudyInstanceUID", "SOPInstanceUID", "ViewPosition"};
        const char *vals[] = {m->patient_id, m->study_uid, m->sop_uid, m->view_position};
        for (int i = 0; i < 4; i++) {
          if (!vals[i][0]) continue;
          fprintf(f, ",\"%s\":", keys[i]);
          ps_cli_json_string(f, vals[i]);
        }
      }
      fputs("}", f);
    }
  } else if (o->kind == OUT_CSV) {
    if (o->count == 0) {
      fputs("file,label", f);
      for (int k = 0; k < K; k++) {
        char h[64];
        snprintf(h, sizeof h, "p_%s", mm->classes[k]);
        fputc(',', f);
        ps_cli_csv_field(f, h);
      }
      fputs(",threshold,PatientID,StudyInstanceUID,SOPInstanceUID,ViewPosition", f);
      if (lungs) fputs(",roi_x0,roi_y0,roi_x1,roi_y1,roi_fallback", f);
      fputs(",in_distribution,ood_score,ood_reason,error\n", f);
    }
    ps_cli_csv_field(f, r->file);
    fputc(',', f);
    if (r->status == PS_OK) {
      ps_cli_csv_field(f, r->label_name);
      for (int k = 0; k < K; k++) fprintf(f, ",%.9g", r->probs[k]);
      if (binary) fprintf(f, ",%.9g", mm->threshold);
      else fputc(',', f);
      const ps_film_meta *m = r->meta;
      int d = has_dicom_ids(m);
      const char *vals[] = {d ? m->patient_id : "", d ? m->study_uid : "", d ? m->sop_uid : "",
                            d ? m->view_position : ""};
      for (int i = 0; i < 4; i++) {
        fputc(',', f);
        ps_cli_csv_field(f, vals[i]);
      }
      if (lungs) fprintf(f, ",%.6f,%.6f,%.6f,%.6f,%d", r->roi[0], r->roi[1], r->roi[2], r->roi[3], r->roi_fallback);
      fputs(r->in_distribution < 0 ? "," : r->in_distribution ? ",true" : ",false", f);
      if (isfinite(r->ood_score)) fprintf(f, ",%.6g,", r->ood_score);
      else fputs(",,", f);
      ps_cli_csv_field(f, r->ood_reason);
      fputs(",\n", f);
    } else {
      for (int k = 0; k < K; k++) fputc(',', f);
      fputs(",,,,,,", f);
      if (lungs) fputs(",,,,,", f);
      fputs(",,,", f);
      ps_cli_csv_field(f, r->error);
      fputc('\n', f);
    }
  } else {
    if (o->count == 0) {
      /* which model decided, and how (JSON and CSV carry the threshold per film) */
      if (mm->task == PS_TASK_BINARY)
        printf("# model %s: %s when P(%s) >= %.4g, else %s\n", o->model_path, mm->classes[1], mm->classes[1],
               mm->threshold, mm->classes[0]);
      else
        printf("# model %s: the most probable of %d classes\n", o->model_path, K);
      if (lungs)
        printf("# the model sees each film's padded lung box%s (roi %s; --json/--csv give the box)\n",
               mm->roi == PS_ROI_LUNGMASK ? ", gray outside the lung fields" : "", ps_roi_name(mm->roi));
      if (ps_model_has_ood(o->model))
        printf("# in-dist: NO! = out of distribution, unlike every film the model was trained on (score > %.4g):\n"
               "#   its label is not to be trusted\n", ps_model_ood_threshold(o->model));
      else
        printf("# in-dist: this model has no out-of-distribution detector (a file from before it): only DICOM\n"
               "#   headers of other modalities are flagged, '?' = unknown\n");
      printf("%-12s", "label");
      for (int k = 0; k < K; k++) {
        char h[64];
        snprintf(h, sizeof h, "P(%s)", mm->classes[k]);
        printf(" %12s", h);
      }
      printf(" %8s  file\n", "in-dist");
    }
    if (r->status == PS_OK) {
      printf("%-12s", r->label_name);
      for (int k = 0; k < K; k++) printf(" %12.4f", r->probs[k]);
      printf(" %8s  %s", r->in_distribution < 0 ? "?" : r->in_distribution ? "yes" : "NO!", r->file);
      if (r->ood_reason[0]) printf("  (%s)", r->ood_reason);
      putchar('\n');
    } else {
      printf("%-12s", "ERROR");
      for (int k = 0; k < K; k++) printf(" %12s", "-");
      printf(" %8s  %s\n", "-", r->file);
    }
  }
  o->count++;
  fflush(f);
  return 0;
}

int ps_cli_classify(int argc, char **argv) {
  const char *model_path = NULL, *v = NULL;
  out_kind kind = OUT_TABLE;
  ps_device device = PS_DEVICE_AUTO;
  int threads = 0, batch = 0, npaths = 0, only_paths = 0;
  const char **paths = calloc((size_t)argc + 1, sizeof *paths);
  if (!paths) return ps_cli_fail("classify", "arguments", PS_ENOMEM);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (only_paths || a[0] != '-' || !a[1]) {
      paths[npaths++] = a;
      continue;
    }
#define VALUE()                                                               \
  do {                                                                        \
    if (!v) {                                                                 \
      if (i + 1 >= argc) {                                                    \
        fprintf(stderr, "pneumoscope classify: %s needs a value\n", a);       \
        free(paths);                                                          \
        return 2;                                                             \
      }                                                                       \
      v = argv[++i];                                                          \
    }                                                                         \
  } while (0)
    v = NULL;
    if (!strcmp(a, "--")) {
      only_paths = 1;
    } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      free(paths);
      return 0;
    } else if (!strcmp(a, "--json")) {
      kind = OUT_JSON;
    } else if (!strcmp(a, "--csv")) {
      kind = OUT_CSV;
    } else if (ps_cli_opt(a, "--model", &v)) {
      VALUE();
      model_path = v;
    } else if (ps_cli_opt(a, "--device", &v)) {
      VALUE();
      if (!strcmp(v, "cpu")) device = PS_DEVICE_CPU;
      else if (!strcmp(v, "cuda")) device = PS_DEVICE_CUDA;
      else if (!strcmp(v, "auto")) device = PS_DEVICE_AUTO;
      else {
        fprintf(stderr, "pneumoscope classify: --device must be cpu, cuda or auto, got '%s'\n", v);
        free(paths);
        return 2;
      }
    } else if (ps_cli_opt(a, "--threads", &v)) {
      VALUE();
      if (ps_cli_int("classify", "--threads", v, &threads) || threads < 0) {
        free(paths);
        return 2;
      }
    } else if (ps_cli_opt(a, "--batch", &v)) {
      VALUE();
      if (ps_cli_int("classify", "--batch", v, &batch) || batch < 1) {
        if (batch < 1) fprintf(stderr, "pneumoscope classify: --batch must be >= 1\n");
        free(paths);
        return 2;
      }
    } else {
      fprintf(stderr, "pneumoscope classify: unknown option '%s'\n", a);
      usage(stderr);
      free(paths);
      return 2;
    }
#undef VALUE
  }
  if (!npaths) {
    usage(stderr);
    free(paths);
    return 2;
  }
  char defpath[4096];
  int st;
  if ((st = ps_model_resolve(model_path, defpath, sizeof defpath)) != PS_OK) {
    free(paths);
    return ps_cli_fail("classify", model_path ? model_path : "default model", st);
  }
  model_path = defpath;
  if (threads > 0 && (st = ps_torch_set_threads(threads)) != PS_OK) {
    free(paths);
    return ps_cli_fail("classify", "threads", st);
  }
  ps_model *m = NULL;
  if ((st = ps_model_load(model_path, device, &m)) != PS_OK) {
    free(paths);
    return ps_cli_fail("classify", model_path, st);
  }
  out_ctx o = {kind, m, model_path, 0};
  ps_infer_opts io = {0};
  io.batch = batch;
  io.threads = threads;
  int nfailed = 0;
  if (kind == OUT_JSON) fputs("[", stdout);
  st = ps_infer_run(m, paths, npaths, &io, on_result, &o, &nfailed);
  if (kind == OUT_JSON) fputs(o.count ? "\n]\n" : "]\n", stdout);
  fflush(stdout);
  ps_model_free(m);
  free(paths);
  if (st != PS_OK) return ps_cli_fail("classify", "run", st);
  if (o.count == 0) fprintf(stderr, "pneumoscope classify: no films found\n");
  if (nfailed) fprintf(stderr, "pneumoscope classify: %d of %d films failed\n", nfailed, o.count);
  return (nfailed || o.count == 0) ? 1 : 0;
}

#else

int ps_cli_classify(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      return 0;
    }
  fprintf(stderr, "pneumoscope classify: built without libtorch (PS_WITH_TORCH=OFF)\n");
  return 1;
}

#endif
