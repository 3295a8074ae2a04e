/* pneumoscope audit: argument handling around ps_gradcam_audit (and ps_gradcam_audit_merge). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ps_gradcam.h"
#include "ps_lung.h"
#ifdef PS_HAVE_GRADCAM
#include "ps_infer.h"
#include "ps_model.h"
#endif

const char ps_cli_audit_help[] = "Grad-CAM lung focus over a manifest split: per-film CSV + per-class summary";

static const char usage_text[] =
    "usage: pneumoscope audit [--model M] --manifest MANIFEST [--split test] [--threshold 0.5]\n"
    "                         [--shard K/N|auto] -o OUTDIR\n"
    "       pneumoscope audit --merge -o OUTDIR SHARDDIR...\n"
    "  For every film of the split: prediction, Grad-CAM and lung_focus (share of the positive CAM\n"
    "  mass inside the segmented lung fields); films below the threshold are flagged.\n"
    "  --model M          binary, 3class (the bundled models) or a .safetensors (default: $PNEUMOSCOPE_MODEL, else binary)\n"
    "  --manifest F       manifest CSV (path,label,subtype,patient_id,split,sha256)\n"
    "  --split S          train | val | test | all (default: test)\n"
    "  --threshold T      flag films with lung_focus < T (default 0.5)\n"
    "  --layer L, --method X   as for `pneumoscope gradcam` (default layer4, cam)\n"
    "  --limit N          at most N films\n"
    "  -o, --out OUTDIR   lung_focus.csv and summary.json (the summary is printed too)\n"
    "  --device cpu|cuda|auto, --threads N\n"
    "  --shard K/N        only the K-th of N contiguous blocks of the split's films (K = 1..N; `auto`:\n"
    "                     from SLURM_ARRAY_TASK_ID/_COUNT or RANK/WORLD_SIZE, as classify): OUTDIR gets\n"
    "                     that block's lung_focus.csv and shard.json (which shard of which model,\n"
    "                     manifest and options, and each film's values for the summary), no summary.\n"
    "                     Run the N shards with the same options and -o folders of their own\n"
    "  --merge            OUTDIR gets what one unsharded audit writes (the same lung_focus.csv rows, the\n"
    "                     same summary.json) from the shard folders SHARDDIR... (every shard 1..N once,\n"
    "                     of one audit; the options are taken from them)\n";

#ifdef PS_HAVE_GRADCAM
static int progress(double f, const char *what, void *user) {
  (void)user;
  fprintf(stderr, "\r[%3.0f%%] %-70.70s", 100 * f, what ? what : "");
  return 0;
}

static json_t *focus(double v) {
  return ps_cli_json_number(v, "%.4f");
}

/* The summary on stdout (summary.json holds the same, from the library). */
static void print_summary(const ps_audit_summary *s, const char *outdir) {
  json_t *classes = json_object();
  for (int k = 0; k < s->num_classes; k++) {
    const ps_audit_class_summary *c = &s->classes[k];
    json_object_set_new(classes, c->name,
                        json_pack("{s:i, s:i, s:i, s:o, s:o, s:o}", "films", c->films, "flagged", c->flagged, "correct",
                                  c->correct, "mean_lung_focus", focus(c->mean_focus), "median_lung_focus",
                                  focus(c->median_focus), "min_lung_focus", focus(c->min_focus)));
  }
  json_t *j = json_pack("{s:i, s:i, s:i, s:i, s:o, s:o, s:o, s:o, s:s}", "films", s->films, "scored", s->scored,
                        "failed", s->failed, "flagged", s->flagged, "threshold",
                        ps_cli_json_number(s->threshold, "%.4g"), "mean_lung_focus", focus(s->mean_focus),
                        "median_lung_focus", focus(s->median_focus), "mean_lung_focus_uniform",
                        focus(s->mean_focus_uniform), "roi", ps_roi_name(s->roi) ? ps_roi_name(s->roi) : "film");
  if (s->roi != PS_ROI_FILM) json_object_set_new(j, "roi_fallbacks", json_integer(s->roi_fallbacks));
  json_object_set_new(j, "classes", classes);
  char path[4200];
  snprintf(path, sizeof path, "%s/lung_focus.csv", outdir);
  json_object_set_new(j, "csv", ps_cli_json_string(path));
  snprintf(path, sizeof path, "%s/summary.json", outdir);
  json_object_set_new(j, "summary", ps_cli_json_string(path));
  ps_cli_json_print(j, stdout, 0, 1);
}

static int merge(const char *outdir, const char **dirs, int ndirs) {
  if (ndirs < 1) {
    fprintf(stderr, "pneumoscope audit: --merge needs the shard folders\n");
    fputs(usage_text, stderr);
    return 2;
  }
  ps_audit_summary s;
  int st = ps_gradcam_audit_merge(dirs, ndirs, outdir, &s);
  if (st) return ps_cli_fail("audit", "merge", st);
  print_summary(&s, outdir);
  return 0;
}

int ps_cli_audit(int argc, char **argv) {
  const char *model = NULL, *manifest = NULL, *outdir = NULL, *split = NULL, *layer = NULL, *method = NULL;
  const char *shard = NULL;
  int device = PS_DEVICE_AUTO, threads = 0, quiet = 0, do_merge = 0;
  ps_audit_opts o;
  memset(&o, 0, sizeof o);
  o.cam = ps_gradcam_opts_default();
  o.threshold = 0.5;
  const ps_cli_option options[] = {{"model", 0, PS_OPT_STRING, &model},
                                   {"manifest", 0, PS_OPT_STRING, &manifest},
                                   {"split", 0, PS_OPT_STRING, &split},
                                   {"out", 'o', PS_OPT_STRING, &outdir},
                                   {"outdir", 0, PS_OPT_STRING, &outdir},
                                   {"threshold", 0, PS_OPT_DOUBLE, &o.threshold, .range = "in (0, 1]"},
                                   {"layer", 0, PS_OPT_STRING, &layer},
                                   {"method", 0, PS_OPT_STRING, &method},
                                   {"limit", 0, PS_OPT_INT, &o.limit, .range = ">= 0"},
                                   {"device", 0, PS_OPT_CHOICE, &device, .choices = ps_cli_devices},
                                   {"threads", 0, PS_OPT_INT, &threads, .range = ">= 0"},
                                   {"quiet", 'q', PS_OPT_FLAG, &quiet},
                                   {"shard", 0, PS_OPT_STRING, &shard},
                                   {"merge", 0, PS_OPT_FLAG, &do_merge},
                                   {0}};
  const char **dirs = calloc((size_t)argc + 1, sizeof *dirs);
  int ndirs = argc;
  if (!dirs) return ps_cli_fail("audit", "arguments", PS_ENOMEM);
  int rc = ps_cli_parse("audit", usage_text, options, argc, argv, dirs, &ndirs);
  if (rc < 0 && do_merge && (model || manifest || split || shard || layer || method || o.limit || o.threshold != 0.5)) {
    fprintf(stderr, "pneumoscope audit: --merge takes model, manifest, split, shard, threshold, limit, layer and method "
                    "from the shard folders\n");
    rc = 2;
  } else if (rc < 0 && !do_merge && ndirs > 0) {
    fprintf(stderr, "pneumoscope audit: unexpected argument '%s' (shard folders go with --merge)\n", dirs[0]);
    fputs(usage_text, stderr);
    rc = 2;
  }
  if (rc < 0 && do_merge && outdir) rc = merge(outdir, dirs, ndirs);
  free(dirs);
  if (rc >= 0) return rc;
  if ((rc = ps_cli_cam_opts("audit", layer, method, &o.cam))) return rc;
  if (!manifest || !outdir) {
    fprintf(stderr, "pneumoscope audit: --manifest and -o OUTDIR are required (--merge: -o)\n");
    fputs(usage_text, stderr);
    return 2;
  }
  if (shard && (rc = ps_cli_shard("audit", shard, &o.shard_index, &o.shard_count))) return rc;
  if (!split) split = "test";
  o.split = strcmp(split, "all") ? split : NULL;
  char used[4096];
  ps_model *m = NULL;
  if (ps_cli_load_model("audit", model, device, threads, used, sizeof used, &m)) return 1;
  if (!quiet) o.progress = progress;
  o.model_path = used;
  ps_audit_summary s;
  int st = ps_gradcam_audit(m, manifest, outdir, &o, &s);
  if (!quiet) fprintf(stderr, "\r%-80s\r", "");
  ps_model_free(m);
  if (st) return ps_cli_fail("audit", manifest, st);
  if (o.shard_count) {
    printf("shard %d/%d: %d films, %d scored, %d failed, %d flagged\n", o.shard_index + 1, o.shard_count, s.films, s.scored,
           s.failed, s.flagged);
    printf("wrote %s/lung_focus.csv and %s/shard.json (merge the shards with audit --merge)\n", outdir, outdir);
    return 0;
  }
  print_summary(&s, outdir);
  return 0;
}
#else
int ps_cli_audit(int argc, char **argv) { return ps_cli_without_torch("audit", usage_text, argc, argv); }
#endif
