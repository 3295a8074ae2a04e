/* pneumoscope gradcam: argument handling around ps_gradcam_compute and the renderers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ps_gradcam.h"
#include "ps_image_io.h"
#ifdef PS_HAVE_GRADCAM
#include "ps_model.h"
#endif

const char ps_cli_gradcam_help[] = "Grad-CAM heatmap/overlay of a film and the share of attention on the lungs";

static const char usage_text[] =
    "usage: pneumoscope gradcam [options] FILE [-o overlay.png]\n"
    "  Explains the classifier's decision on FILE (PNG, JPEG, DICOM) and measures lung_focus, the\n"
    "  share of the positive class-activation mass inside the lung fields (classical segmentation).\n"
    "  --model M          binary, 3class (the bundled models) or a .safetensors (default: $PNEUMOSCOPE_MODEL, else binary)\n"
    "  --layer L          layer1..layer4 (or 1..4; default layer4)\n"
    "  --class C          class to explain, by name or index (default: the predicted class)\n"
    "  --method X         cam | gradcam | gradcam++ (default: cam at layer4 — identical to Grad-CAM\n"
    "                     there after normalisation, no backward pass — and gradcam elsewhere)\n"
    "  -o, --out F.png    overlay: film gray + viridis colour map, alpha = 0.6 x CAM; for a model\n"
    "                     trained with --roi lungs or lungmask the lung box it saw is outlined in orange (the CAM\n"
    "                     is zero outside it)\n"
    "  --alpha A          overlay alpha in (0, 1] (default 0.6)\n"
    "  --constant-alpha   blend with a constant alpha instead of one proportional to the CAM\n"
    "  --heatmap F.png    the CAM alone, viridis colour map (dark purple 0 .. yellow 1)\n"
    "  --npy F.npy        the CAM at film resolution, float32 (H, W) in [0, 1] (numpy.load)\n"
    "  --mask F.png       the lung mask, 8-bit 0/255 at film resolution\n"
    "  --mask-overlay F.png  the film with the lung fields outlined (to check the segmentation)\n"
    "  --json             one JSON object on stdout instead of text\n"
    "  --device cpu|cuda|auto, --threads N\n"
    "  Outputs are written atomically and never over the input film or a file PneumoScope did not write.\n";

#ifdef PS_HAVE_GRADCAM
/* The box a lungs model saw, drawn on the overlay and the heatmap (thin orange line). */
static const uint8_t roi_colour[3] = {255, 140, 0};

static int write_outputs(const char *in, const ps_image *film, const ps_gradcam_result *r, const char *overlay,
                         const char *heatmap, const char *npy, const char *mask, const char *mask_overlay,
                         const ps_overlay_opts *oo, const double *box) {
  const char *outs[5] = {overlay, heatmap, npy, mask, mask_overlay};
  for (int i = 0; i < 5; i++) {
    if (!outs[i]) continue;
    if (ps_image_same_file(outs[i], in)) {
      fprintf(stderr, "pneumoscope gradcam: refusing to write %s: it is the input film\n", outs[i]);
      return 1;
    }
    for (int j = 0; j < i; j++)
      if (outs[j] && !strcmp(outs[j], outs[i])) {
        fprintf(stderr, "pneumoscope gradcam: %s given for two outputs\n", outs[i]);
        return 2;
      }
  }
  int w = r->width, h = r->height, st;
  uint8_t *rgb = malloc((size_t)3 * w * h);
  if (!rgb) return ps_cli_fail("gradcam", "output", PS_ENOMEM);
  if (overlay) {
    if ((st = ps_gradcam_overlay_rgb(film, r->cam, oo, rgb)) ||
        (box && (st = ps_gradcam_draw_box_rgb(rgb, w, h, box, roi_colour, 0))) ||
        (st = ps_image_write_png_rgb(rgb, w, h, overlay)))
      return free(rgb), ps_cli_fail("gradcam", overlay, st);
  }
  if (heatmap) {
    if ((st = ps_gradcam_heatmap_rgb(r->cam, w, h, rgb)) ||
        (box && (st = ps_gradcam_draw_box_rgb(rgb, w, h, box, roi_colour, 0))) ||
        (st = ps_image_write_png_rgb(rgb, w, h, heatmap)))
      return free(rgb), ps_cli_fail("gradcam", heatmap, st);
  }
  if (mask_overlay) {
    if (!r->lung_mask) return free(rgb), fprintf(stderr, "pneumoscope gradcam: no lung mask\n"), 1;
    if ((st = ps_lung_overlay_rgb(film, r->lung_mask, rgb)) || (st = ps_image_write_png_rgb(rgb, w, h, mask_overlay)))
      return free(rgb), ps_cli_fail("gradcam", mask_overlay, st);
  }
  free(rgb);
  if (npy && (st = ps_gradcam_write_npy(npy, r->cam, w, h))) return ps_cli_fail("gradcam", npy, st);
  if (mask) {
    ps_image *mi = NULL;
    if ((st = ps_image_create(w, h, &mi))) return ps_cli_fail("gradcam", mask, st);
    for (size_t i = 0; i < (size_t)w * h; i++) mi->data[i] = r->lung_mask && r->lung_mask[i] ? 1.0f : 0.0f;
    st = ps_image_write_png(mi, mask);
    ps_image_free(mi);
    if (st) return ps_cli_fail("gradcam", mask, st);
  }
  return 0;
}

static void print_focus(FILE *f, double v) {
  if (isfinite(v)) fprintf(f, "%.4f", v);
  else fputs("null", f);
}
#endif

int ps_cli_gradcam(int argc, char **argv) {
  const char *model = NULL, *in = NULL, *overlay = NULL, *heatmap = NULL, *npy = NULL, *mask = NULL;
  const char *mask_overlay = NULL, *cls = NULL;
  int json = 0, threads = 0;
  ps_gradcam_opts o = ps_gradcam_opts_default();
  ps_overlay_opts oo;
  memset(&oo, 0, sizeof oo);
  const char *device = "auto";
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = NULL;
#define NEXT() PS_CLI_NEXT("gradcam")
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      fputs(usage_text, stdout);
      return 0;
    } else if (ps_cli_opt(a, "--model", &v)) {
      NEXT();
      model = v;
    } else if (ps_cli_opt(a, "--layer", &v)) {
      NEXT();
      const char *d = !strncmp(v, "layer", 5) ? v + 5 : v;
      if (strlen(d) != 1 || d[0] < '1' || d[0] > '4')
        return fprintf(stderr, "pneumoscope gradcam: --layer is layer1..layer4, got '%s'\n", v), 2;
      o.layer = d[0] - '0';
    } else if (ps_cli_opt(a, "--class", &v)) {
      NEXT();
      cls = v;
    } else if (ps_cli_opt(a, "--method", &v)) {
      NEXT();
      if (ps_cam_method_parse(v, &o.method) != PS_OK)
        return fprintf(stderr, "pneumoscope gradcam: --method is cam, gradcam or gradcam++, got '%s'\n", v), 2;
    } else if (!strcmp(a, "-o") || ps_cli_opt(a, "--out", &v)) {
      NEXT();
      overlay = v;
    } else if (ps_cli_opt(a, "--heatmap", &v)) {
      NEXT();
      heatmap = v;
    } else if (ps_cli_opt(a, "--npy", &v)) {
      NEXT();
      npy = v;
    } else if (ps_cli_opt(a, "--mask-overlay", &v)) {
      NEXT();
      mask_overlay = v;
    } else if (ps_cli_opt(a, "--mask", &v)) {
      NEXT();
      mask = v;
    } else if (ps_cli_opt(a, "--alpha", &v)) {
      NEXT();
      if (ps_cli_double("gradcam", a, v, &oo.alpha)) return 2;
      if (!(oo.alpha > 0 && oo.alpha <= 1))
        return fprintf(stderr, "pneumoscope gradcam: --alpha must be in (0, 1], got %s\n", v), 2;
    } else if (!strcmp(a, "--constant-alpha")) {
      oo.mode = PS_OVERLAY_CONSTANT;
    } else if (!strcmp(a, "--json")) {
      json = 1;
    } else if (ps_cli_opt(a, "--device", &v)) {
      NEXT();
      if (strcmp(v, "cpu") && strcmp(v, "cuda") && strcmp(v, "auto"))
        return fprintf(stderr, "pneumoscope gradcam: --device is cpu, cuda or auto, got '%s'\n", v), 2;
      device = v;
    } else if (ps_cli_opt(a, "--threads", &v)) {
      NEXT();
      if (ps_cli_int("gradcam", a, v, &threads) || threads < 0) return 2;
    } else if (a[0] == '-' && a[1]) {
      fprintf(stderr, "pneumoscope gradcam: unknown option '%s'\n", a);
      fputs(usage_text, stderr);
      return 2;
    } else if (!in) {
      in = a;
    } else {
      fprintf(stderr, "pneumoscope gradcam: one film at a time ('%s' is extra); use `pneumoscope audit` for many\n", a);
      return 2;
    }
#undef NEXT
  }
  if (!in) {
    fputs(usage_text, stderr);
    return 2;
  }
  if (o.method == PS_CAM_CAM && o.layer != 4) {
    fprintf(stderr, "pneumoscope gradcam: --method cam works at layer4 only (use gradcam for layer%d)\n", o.layer);
    return 2;
  }
#ifndef PS_HAVE_GRADCAM
  (void)model, (void)overlay, (void)heatmap, (void)npy, (void)mask, (void)mask_overlay, (void)cls, (void)json;
  (void)threads, (void)device;
  fprintf(stderr, "pneumoscope gradcam: built without libtorch\n");
  return 1;
#else
  char used[4096];
  int st;
  ps_model *m = NULL;
  ps_image *film = NULL;
  ps_gradcam_result *r = NULL;
  int rc = 1;
  if (ps_cli_load_model("gradcam", model, device, threads, used, sizeof used, &m)) return 1;
  model = used;
  const ps_model_meta *meta = ps_model_meta_get(m);
  if (cls) {
    int idx = ps_model_class_index(m, cls);
    if (idx < 0) {
      char *end = NULL;
      long k = strtol(cls, &end, 10);
      if (end == cls || *end || k < 0 || k >= meta->num_classes) {
        fprintf(stderr, "pneumoscope gradcam: --class '%s' is not a class of %s (", cls, model);
        for (int k2 = 0; k2 < meta->num_classes; k2++) fprintf(stderr, "%s%s", k2 ? ", " : "", meta->classes[k2]);
        fprintf(stderr, " or 0..%d)\n", meta->num_classes - 1);
        rc = 2;
        goto done;
      }
      idx = (int)k;
    }
    o.use_class = 1;
    o.class_index = idx;
  }
  if ((st = ps_image_read(in, NULL, &film))) {
    rc = ps_cli_fail("gradcam", in, st);
    goto done;
  }
  if ((st = ps_gradcam_compute(m, film, &o, &r))) {
    rc = ps_cli_fail("gradcam", in, st);
    goto done;
  }
  const int lungs = meta->roi != PS_ROI_FILM;
  if ((rc = write_outputs(in, film, r, overlay, heatmap, npy, mask, mask_overlay, &oo, lungs ? r->roi : NULL)))
    goto done;
  if (json) {
    printf("{\"file\": ");
    ps_cli_json_string(stdout, in);
    printf(", \"model\": ");
    ps_cli_json_string(stdout, model);
    printf(", \"predicted\": ");
    ps_cli_json_string(stdout, meta->classes[r->predicted]);
    printf(", \"probabilities\": {");
    for (int k = 0; k < r->num_classes; k++) {
      printf("%s", k ? ", " : "");
      ps_cli_json_string(stdout, meta->classes[k]);
      printf(": %.6f", r->probs[k]);
    }
    printf("}, \"explained_class\": ");
    ps_cli_json_string(stdout, meta->classes[r->target_class]);
    printf(", \"layer\": \"layer%d\", \"method\": \"%s\", \"width\": %d, \"height\": %d, \"raw_max\": %.6g, "
           "\"lung_focus\": ",
           r->layer, ps_cam_method_name(r->method), r->width, r->height, r->raw_max);
    print_focus(stdout, r->lung_focus);
    printf(", \"lung_focus_uniform\": ");
    print_focus(stdout, r->lung_focus_uniform);
    printf(", \"lungs\": %d, \"lungs_found\": %d, \"lung_area_fraction\": %.4f", r->lung.lungs, r->lung.lungs_found,
           r->lung.area_fraction);
    if (lungs)
      printf(", \"roi\": [%.6f, %.6f, %.6f, %.6f], \"roi_fallback\": %s", r->roi[0], r->roi[1], r->roi[2], r->roi[3],
             r->roi_fallback ? "true" : "false");
    const char *names[5] = {"overlay", "heatmap", "npy", "mask", "mask_overlay"};
    const char *vals[5] = {overlay, heatmap, npy, mask, mask_overlay};
    for (int i = 0; i < 5; i++)
      if (vals[i]) {
        printf(", \"%s\": ", names[i]);
        ps_cli_json_string(stdout, vals[i]);
      }
    printf("}\n");
  } else {
    printf("film: %s\nprediction: %s (p = %.4f)\nprobabilities:", in, meta->classes[r->predicted],
           r->probs[r->predicted]);
    for (int k = 0; k < r->num_classes; k++) printf(" %s %.4f", meta->classes[k], r->probs[k]);
    printf("\nexplained: %s at layer%d (%s)\nlung_focus: ", meta->classes[r->target_class], r->layer,
           ps_cam_method_name(r->method));
    print_focus(stdout, r->lung_focus);
    printf(" (uniform attention: ");
    print_focus(stdout, r->lung_focus_uniform);
    printf("; lung fields: %d, %.1f%% of the film%s)\n", r->lung.lungs, 100 * r->lung.area_fraction,
           r->lung.mirrored ? ", one mirrored" : "");
    if (lungs)
      printf("model input: lung box x %.3f..%.3f, y %.3f..%.3f of the film%s (drawn on the overlay)\n", r->roi[0],
             r->roi[2], r->roi[1], r->roi[3], r->roi_fallback ? " (no plausible lung box: whole film)" : "");
    if (overlay) printf("overlay: %s\n", overlay);
    if (heatmap) printf("heatmap: %s\n", heatmap);
    if (npy) printf("npy: %s\n", npy);
    if (mask) printf("mask: %s\n", mask);
    if (mask_overlay) printf("mask overlay: %s\n", mask_overlay);
  }
  rc = 0;
done:
  ps_gradcam_result_free(r);
  ps_image_free(film);
  ps_model_free(m);
  return rc;
#endif
}
