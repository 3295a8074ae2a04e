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

static const char usage_text[] =
    "usage: pneumoscope classify [--model M] [--json|--csv] [--device cpu|cuda|auto] [--threads N]\n"
    "                            [--batch B] [--shard K/N|auto] [--precision fp32|bf16]\n"
    "                            [--fast-decode] PATH...\n"
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
    "  --shard K/N   only the K-th of N contiguous blocks of the film list (K = 1..N), for N jobs or\n"
    "                nodes; `auto` takes K and N from SLURM_ARRAY_TASK_ID/_COUNT (a job array) or\n"
    "                RANK/WORLD_SIZE. Shards 1..N in order hold every film once, with the same\n"
    "                probabilities as one run: concatenate their CSVs (one header) or JSON arrays\n"
    "  --precision P fp32 (default) or bf16: bfloat16 convolutions on a CPU with AVX512_BF16 or AMX\n"
    "                (faster; probabilities within about 1e-2 of fp32); refused on other CPUs\n"
    "  --fast-decode large JPEGs decoded at a reduced libjpeg-turbo IDCT scale that keeps at least twice\n"
    "                the model's input size (faster; default: full size, equal to Pillow's decode)\n"
    "  A film that cannot be read is reported (stderr and an error row) and skipped.\n"
    "  Exit status: 0 all films classified, 1 any film failed or the model could not run,\n"
    "  2 bad usage.\n";

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
    json_t *j = json_pack("{s:o}", "file", ps_cli_json_string(r->file));
    if (r->status != PS_OK) {
      json_object_set_new(j, "label", json_null());
      json_object_set_new(j, "error", ps_cli_json_string(r->error));
    } else {
      json_t *probs = json_object();
      for (int k = 0; k < K; k++) json_object_set_new(probs, mm->classes[k], ps_cli_json_number(r->probs[k], "%.9g"));
      json_object_set_new(j, "label", ps_cli_json_string(r->label_name));
      json_object_set_new(j, "probabilities", probs);
      json_object_set_new(j, "threshold", binary ? ps_cli_json_number(mm->threshold, "%.9g") : json_null());
      if (lungs) {
        json_t *box = json_array();
        for (int i = 0; i < 4; i++) json_array_append_new(box, ps_cli_json_number(r->roi[i], "%.6f"));
        json_object_set_new(j, "roi", box);
        json_object_set_new(j, "roi_fallback", json_boolean(r->roi_fallback));
      }
      json_object_set_new(j, "in_distribution",
                          r->in_distribution < 0 ? json_null() : json_boolean(r->in_distribution));
      json_object_set_new(j, "ood_score", ps_cli_json_number(r->ood_score, "%.6g"));
      if (r->ood_reason[0]) json_object_set_new(j, "ood_reason", ps_cli_json_string(r->ood_reason));
      const ps_film_meta *m = r->meta;
      if (has_dicom_ids(m)) {
        const char *keys[] = {"PatientID", "StudyInstanceUID", "SOPInstanceUID", "ViewPosition"};
        const char *vals[] = {m->patient_id, m->study_uid, m->sop_uid, m->view_position};
        for (int i = 0; i < 4; i++)
          if (vals[i][0]) json_object_set_new(j, keys[i], ps_cli_json_string(vals[i]));
      }
    }
    fputs(o->count ? ",\n  " : "\n  ", f); /* one film per line: the array grows as films are done */
    ps_cli_json_print(j, f, JSON_COMPACT, 0);
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
               "#   headers of other modalities%s are flagged, '?' = unknown\n",
               mm->patient_ages[1] > 0 ? " or other ages" : "");
      if (mm->patient_ages[1] > 0)
        printf("# trained on patients aged %g-%g years: a DICOM whose header gives another age is flagged\n",
               mm->patient_ages[0], mm->patient_ages[1]);
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
  const char *model_path = NULL;
  const char *shard = NULL;
  int kind = OUT_TABLE, device = PS_DEVICE_AUTO, threads = 0, batch = 0, shard_k = 0, shard_n = 0;
  int precision = PS_PRECISION_FP32, fast_decode = 0;
  static const ps_cli_choice precisions[] = {{"fp32", PS_PRECISION_FP32}, {"bf16", PS_PRECISION_BF16}, {NULL, 0}};
  const ps_cli_option options[] = {{"json", 0, PS_OPT_SET, &kind, .value = OUT_JSON},
                                   {"csv", 0, PS_OPT_SET, &kind, .value = OUT_CSV},
                                   {"model", 0, PS_OPT_STRING, &model_path},
                                   {"device", 0, PS_OPT_CHOICE, &device, .choices = ps_cli_devices},
                                   {"threads", 0, PS_OPT_INT, &threads, .range = ">= 0"},
                                   {"batch", 0, PS_OPT_INT, &batch, .range = ">= 1"},
                                   {"shard", 0, PS_OPT_STRING, &shard},
                                   {"precision", 0, PS_OPT_CHOICE, &precision, .choices = precisions},
                                   {"fast-decode", 0, PS_OPT_SET, &fast_decode, .value = 1},
                                   {0}};
  const char **paths = calloc((size_t)argc, sizeof *paths);
  int npaths = argc;
  if (!paths) return ps_cli_fail("classify", "arguments", PS_ENOMEM);
  int rc = ps_cli_parse("classify", usage_text, options, argc, argv, paths, &npaths);
  if (rc < 0 && npaths == 0) fputs(usage_text, stderr), rc = 2;
  if (rc < 0 && shard) {
    int st = ps_cli_shard("classify", shard, &shard_k, &shard_n); /* 0-based from here on */
    if (st) rc = st;
  }
  char used[4096];
  ps_model *m = NULL;
  if (rc < 0 && ps_cli_load_model("classify", model_path, device, threads, used, sizeof used, &m)) rc = 1;
  if (rc < 0 && precision != PS_PRECISION_FP32) {
    int st = ps_model_set_precision(m, (ps_precision)precision);
    if (st) rc = ps_cli_fail("classify", "--precision bf16", st), ps_model_free(m);
  }
  if (rc >= 0) return free(paths), rc;
  model_path = used;
  out_ctx o = {kind, m, model_path, 0};
  ps_infer_opts io = {0};
  io.batch = batch;
  io.threads = threads;
  io.shard_count = shard_n;
  io.shard_index = shard_k;
  io.fast_decode = fast_decode;
  int nfailed = 0;
  if (kind == OUT_JSON) fputs("[", stdout);
  int st = ps_infer_run(m, paths, npaths, &io, on_result, &o, &nfailed);
  if (kind == OUT_JSON) fputs(o.count ? "\n]\n" : "]\n", stdout);
  fflush(stdout);
  ps_model_free(m);
  free(paths);
  if (st != PS_OK) return ps_cli_fail("classify", "run", st);
  if (nfailed) fprintf(stderr, "pneumoscope classify: %d of %d films failed\n", nfailed, o.count);
  if (o.count == 0 && shard_n) { /* more shards than films: this one is empty, not an error */
    fprintf(stderr, "pneumoscope classify: shard %d/%d holds no film\n", shard_k + 1, shard_n);
    return 0;
  }
  if (o.count == 0) fprintf(stderr, "pneumoscope classify: no films found\n");
  return (nfailed || o.count == 0) ? 1 : 0;
}

#else
int ps_cli_classify(int argc, char **argv) { return ps_cli_without_torch("classify", usage_text, argc, argv); }
#endif
