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

static void print_json(const char *in, const char *model, const ps_model_meta *meta, const ps_gradcam_result *r,
                       const char *const outs[5]) {
  json_t *probs = json_object(), *j;
  for (int k = 0; k < r->num_classes; k++)
    json_object_set_new(probs, meta->classes[k], ps_cli_json_number(r->probs[k], "%.6f"));
  char layer[16];
  snprintf(layer, sizeof layer, "layer%d", r->layer);
  j = json_pack("{s:o, s:o, s:o, s:o, s:o, s:s, s:s, s:i, s:i, s:o, s:o, s:o, s:i, s:i, s:o}", "file",
                ps_cli_json_string(in), "model", ps_cli_json_string(model), "predicted",
                ps_cli_json_string(meta->classes[r->predicted]), "probabilities", probs, "explained_class",
                ps_cli_json_string(meta->classes[r->target_class]), "layer", layer, "method",
                ps_cam_method_name(r->method), "width", r->width, "height", r->height, "raw_max",
                ps_cli_json_number(r->raw_max, "%.6g"), "lung_focus", ps_cli_json_number(r->lung_focus, "%.4f"),
                "lung_focus_uniform", ps_cli_json_number(r->lung_focus_uniform, "%.4f"), "lungs", r->lung.lungs,
                "lungs_found", r->lung.lungs_found, "lung_area_fraction",
                ps_cli_json_number(r->lung.area_fraction, "%.4f"));
  if (meta->roi != PS_ROI_FILM) {
    json_t *box = json_array();
    for (int i = 0; i < 4; i++) json_array_append_new(box, ps_cli_json_number(r->roi[i], "%.6f"));
    json_object_set_new(j, "roi", box);
    json_object_set_new(j, "roi_fallback", json_boolean(r->roi_fallback));
  }
  static const char *names[5] = {"overlay", "heatmap", "npy", "mask", "mask_overlay"};
  for (int i = 0; i < 5; i++)
    if (outs[i]) json_object_set_new(j, names[i], ps_cli_json_string(outs[i]));
  ps_cli_json_print(j, stdout, 0, 1);
}

int ps_cli_gradcam(int argc, char **argv) {
  const char *model = NULL, *overlay = NULL, *heatmap = NULL, *npy = NULL, *mask = NULL, *mask_overlay = NULL;
  const char *cls = NULL, *layer = NULL, *method = NULL;
  int json = 0, threads = 0, device = PS_DEVICE_AUTO, constant_alpha = 0;
  ps_gradcam_opts o = ps_gradcam_opts_default();
  ps_overlay_opts oo;
  memset(&oo, 0, sizeof oo);
  const ps_cli_option options[] = {{"model", 0, PS_OPT_STRING, &model},
                                   {"layer", 0, PS_OPT_STRING, &layer},
                                   {"class", 0, PS_OPT_STRING, &cls},
                                   {"method", 0, PS_OPT_STRING, &method},
                                   {"out", 'o', PS_OPT_STRING, &overlay},
                                   {"heatmap", 0, PS_OPT_STRING, &heatmap},
                                   {"npy", 0, PS_OPT_STRING, &npy},
                                   {"mask-overlay", 0, PS_OPT_STRING, &mask_overlay},
                                   {"mask", 0, PS_OPT_STRING, &mask},
                                   {"alpha", 0, PS_OPT_DOUBLE, &oo.alpha, .range = "in (0, 1]"},
                                   {"constant-alpha", 0, PS_OPT_FLAG, &constant_alpha},
                                   {"json", 0, PS_OPT_FLAG, &json},
                                   {"device", 0, PS_OPT_CHOICE, &device, .choices = ps_cli_devices},
                                   {"threads", 0, PS_OPT_INT, &threads, .range = ">= 0"},
                                   {0}};
  const char *films[2];
  int nfilms = 2, rc = ps_cli_parse("gradcam", usage_text, options, argc, argv, films, &nfilms);
  if (rc >= 0) return rc;
  if ((rc = ps_cli_cam_opts("gradcam", layer, method, &o))) return rc;
  if (nfilms == 0) return fputs(usage_text, stderr), 2;
  if (nfilms > 1)
    return fprintf(stderr,
                   "pneumoscope gradcam: one film at a time ('%s' is extra); use `pneumoscope audit` for many\n",
                   films[1]),
           2;
  const char *in = films[0];
  if (constant_alpha) oo.mode = PS_OVERLAY_CONSTANT;
  char used[4096];
  int st;
  ps_model *m = NULL;
  ps_image *film = NULL;
  ps_gradcam_result *r = NULL;
  rc = 1;
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
    const char *outs[5] = {overlay, heatmap, npy, mask, mask_overlay};
    print_json(in, model, meta, r, outs);
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
}
#else
int ps_cli_gradcam(int argc, char **argv) { return ps_cli_without_torch("gradcam", usage_text, argc, argv); }
#endif
