/* pneumoscope audit: argument handling around ps_gradcam_audit. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "ps_gradcam.h"
#include "ps_lung.h"
#ifdef PS_HAVE_GRADCAM
#include "ps_model.h"
#endif

const char ps_cli_audit_help[] = "Grad-CAM lung focus over a manifest split: per-film CSV + per-class summary";

static const char usage_text[] =
    "usage: pneumoscope audit [--model M] --manifest MANIFEST [--split test] [--threshold 0.5] -o OUTDIR\n"
    "  For every film of the split: prediction, Grad-CAM and lung_focus (share of the positive CAM\n"
    "  mass inside the segmented lung fields); films below the threshold are flagged.\n"
    "  --model M          binary, 3class (the bundled models) or a .safetensors (default: $PNEUMOSCOPE_MODEL, else binary)\n"
    "  --manifest F       manifest CSV (path,label,subtype,patient_id,split,sha256)\n"
    "  --split S          train | val | test | all (default: test)\n"
    "  --threshold T      flag films with lung_focus < T (default 0.5)\n"
    "  --layer L, --method X   as for `pneumoscope gradcam` (default layer4, cam)\n"
    "  --limit N          at most N films\n"
    "  -o, --out OUTDIR   lung_focus.csv and summary.json (the summary is printed too)\n"
    "  --device cpu|cuda|auto, --threads N\n";

#ifdef PS_HAVE_GRADCAM
static int progress(double f, const char *what, void *user) {
  (void)user;
  fprintf(stderr, "\r[%3.0f%%] %-70.70s", 100 * f, what ? what : "");
  return 0;
}

static void num(double v) {
  if (isfinite(v)) printf("%.4f", v);
  else printf("null");
}
#endif

int ps_cli_audit(int argc, char **argv) {
  const char *model = NULL, *manifest = NULL, *outdir = NULL, *split = "test", *device = "auto";
  int threads = 0, quiet = 0;
  ps_audit_opts o;
  memset(&o, 0, sizeof o);
  o.cam = ps_gradcam_opts_default();
  o.threshold = 0.5;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = NULL;
#define NEXT() PS_CLI_NEXT("audit")
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      fputs(usage_text, stdout);
      return 0;
    } else if (ps_cli_opt(a, "--model", &v)) {
      NEXT();
      model = v;
    } else if (ps_cli_opt(a, "--manifest", &v)) {
      NEXT();
      manifest = v;
    } else if (ps_cli_opt(a, "--split", &v)) {
      NEXT();
      split = v;
    } else if (!strcmp(a, "-o") || ps_cli_opt(a, "--out", &v) || ps_cli_opt(a, "--outdir", &v)) {
      NEXT();
      outdir = v;
    } else if (ps_cli_opt(a, "--threshold", &v)) {
      NEXT();
      if (ps_cli_double("audit", a, v, &o.threshold)) return 2;
      if (!(o.threshold > 0 && o.threshold <= 1))
        return fprintf(stderr, "pneumoscope audit: --threshold must be in (0, 1], got %s\n", v), 2;
    } else if (ps_cli_opt(a, "--layer", &v)) {
      NEXT();
      const char *d = !strncmp(v, "layer", 5) ? v + 5 : v;
      if (strlen(d) != 1 || d[0] < '1' || d[0] > '4')
        return fprintf(stderr, "pneumoscope audit: --layer is layer1..layer4, got '%s'\n", v), 2;
      o.cam.layer = d[0] - '0';
    } else if (ps_cli_opt(a, "--method", &v)) {
      NEXT();
      if (ps_cam_method_parse(v, &o.cam.method) != PS_OK)
        return fprintf(stderr, "pneumoscope audit: --method is cam, gradcam or gradcam++, got '%s'\n", v), 2;
    } else if (ps_cli_opt(a, "--limit", &v)) {
      NEXT();
      if (ps_cli_int("audit", a, v, &o.limit) || o.limit < 0) return 2;
    } else if (ps_cli_opt(a, "--device", &v)) {
      NEXT();
      if (strcmp(v, "cpu") && strcmp(v, "cuda") && strcmp(v, "auto"))
        return fprintf(stderr, "pneumoscope audit: --device is cpu, cuda or auto, got '%s'\n", v), 2;
      device = v;
    } else if (ps_cli_opt(a, "--threads", &v)) {
      NEXT();
      if (ps_cli_int("audit", a, v, &threads) || threads < 0) return 2;
    } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
      quiet = 1;
    } else {
      fprintf(stderr, "pneumoscope audit: unknown argument '%s'\n", a);
      fputs(usage_text, stderr);
      return 2;
    }
#undef NEXT
  }
  if (!manifest || !outdir) {
    fprintf(stderr, "pneumoscope audit: --manifest and -o OUTDIR are required\n");
    fputs(usage_text, stderr);
    return 2;
  }
  if (o.cam.method == PS_CAM_CAM && o.cam.layer != 4) {
    fprintf(stderr, "pneumoscope audit: --method cam works at layer4 only\n");
    return 2;
  }
  o.split = strcmp(split, "all") ? split : NULL;
#ifndef PS_HAVE_GRADCAM
  (void)model, (void)threads, (void)device, (void)quiet;
  fprintf(stderr, "pneumoscope audit: built without libtorch\n");
  return 1;
#else
  int st;
  char used[4096];
  ps_model *m = NULL;
  if (ps_cli_load_model("audit", model, device, threads, used, sizeof used, &m)) return 1;
  if (!quiet) o.progress = progress;
  ps_audit_summary s;
  st = ps_gradcam_audit(m, manifest, outdir, &o, &s);
  if (!quiet) fprintf(stderr, "\r%-80s\r", "");
  ps_model_free(m);
  if (st) return ps_cli_fail("audit", manifest, st);
  printf("{\"films\": %d, \"scored\": %d, \"failed\": %d, \"flagged\": %d, \"threshold\": %.4g, \"mean_lung_focus\": ",
         s.films, s.scored, s.failed, s.flagged, s.threshold);
  num(s.mean_focus);
  printf(", \"median_lung_focus\": ");
  num(s.median_focus);
  printf(", \"mean_lung_focus_uniform\": ");
  num(s.mean_focus_uniform);
  printf(", \"roi\": \"%s\"", ps_roi_name(s.roi) ? ps_roi_name(s.roi) : "film");
  if (s.roi != PS_ROI_FILM) printf(", \"roi_fallbacks\": %d", s.roi_fallbacks);
  printf(", \"classes\": {");
  for (int k = 0; k < s.num_classes; k++) {
    const ps_audit_class_summary *c = &s.classes[k];
    printf("%s", k ? ", " : "");
    ps_cli_json_string(stdout, c->name);
    printf(": {\"films\": %d, \"flagged\": %d, \"correct\": %d, \"mean_lung_focus\": ", c->films, c->flagged, c->correct);
    num(c->mean_focus);
    printf(", \"median_lung_focus\": ");
    num(c->median_focus);
    printf(", \"min_lung_focus\": ");
    num(c->min_focus);
    printf("}");
  }
  char path[4200];
  snprintf(path, sizeof path, "%s/lung_focus.csv", outdir);
  printf("}, \"csv\": ");
  ps_cli_json_string(stdout, path);
  snprintf(path, sizeof path, "%s/summary.json", outdir);
  printf(", \"summary\": ");
  ps_cli_json_string(stdout, path);
  printf("}\n");
  return 0;
#endif
}
