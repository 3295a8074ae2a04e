/* ps_gradcam.h — class activation maps (CAM, Grad-CAM, Grad-CAM++) for the ResNet18 classifier,
 * rendered at film resolution, and how much of the attention falls inside the lung fields.
 *
 *   ps_model *m = NULL;  ps_image *film = NULL;  ps_gradcam_result *r = NULL;
 *   ps_model_load("pneumoscope-binary.safetensors", PS_DEVICE_AUTO, &m);
 *   ps_image_read("film.jpeg", NULL, &film);
 *   ps_gradcam_opts o = ps_gradcam_opts_default();          // layer4, predicted class, auto method
 *   if (ps_gradcam_compute(m, film, &o, &r) == PS_OK) {
 *     printf("class %d  P=%.3f  lung_focus=%.2f\n", r->target_class, r->probs[r->target_class], r->lung_focus);
 *     uint8_t *rgb = malloc((size_t)3 * r->width * r->height);
 *     ps_gradcam_overlay_rgb(film, r->cam, NULL, rgb);      // film gray + viridis, alpha ~ CAM
 *     ps_image_write_png_rgb(rgb, r->width, r->height, "overlay.png");
 *     ps_gradcam_write_npy("cam.npy", r->cam, r->width, r->height);   // numpy.load -> (H, W) float32
 *     free(rgb);
 *   }
 *   ps_gradcam_result_free(r);  ps_image_free(film);  ps_model_free(m);
 *
 * Definitions (A = activation of the chosen layer for the film's network input, (C, h, w);
 * S_c = logit of class c; the network input is ps_preprocess_tensor_ex at the model's input size
 * with the model's mean/std, i.e. the film squashed to a square as the classifier sees it):
 *   Grad-CAM    w_k = mean_ij dS_c/dA_k(i,j) (autograd through the libtorch wrapper);
 *               map = ReLU(sum_k w_k A_k).
 *   CAM         layer4 only: w_k = fc.weight[c,k]. ResNet18 ends in global average pooling + fc,
 *               so dS_c/dA_k(i,j) = fc.weight[c,k] / (h w): Grad-CAM at layer4 is CAM times the
 *               positive constant 1/(h w), identical after normalisation, without a backward pass.
 *   Grad-CAM++  pytorch-grad-cam's closed form with g = dS_c/dA:
 *               a = g^2 / (2 g^2 + (sum_ij A_k) g^3) (0 where g = 0), w_k = sum_ij a ReLU(g).
 *   AUTO        (default) CAM at layer4, Grad-CAM at layer1..3.
 * The (h, w) map is upsampled to the film's (H, W) with bilinear interpolation, half-pixel
 * centres (torch.nn.functional.interpolate(mode="bilinear", align_corners=False)), and divided by
 * its maximum: cam is in [0, 1] and raw_max keeps the maximum before that division (0 when the
 * map has no positive value: then cam is all zero and lung_focus is NaN).
 *
 * Lungs models (metadata roi "lungs", ps_model.h): the network input is the crop of the film to
 * ps_lung_roi's box (the one classify uses, ps_lung_crop_input); the map is upsampled to the crop's
 * size in pixels and pasted into the film's grid at the box, zero outside it, so cam, overlays,
 * .npy files and lung_focus stay in the film's own pixel grid (result.roi says where the box is).
 * Lungmask models (roi "lungmask"): the same box and pasting; the input is the box with everything
 * outside the dilated lung mask gray (ps_lung_mask_input, the mask of result.lung_mask when the
 * lung options are the defaults), exactly what classify gives the network.
 *
 * lung_focus = sum(cam * lung) / sum(cam): the share of the positive CAM mass that lies inside the
 * lung mask of ps_lung_segment (1 = all attention on the lung fields, 0 = none). The film is taken
 * in display orientation with anatomy bright (what ps_image_read returns; DICOM after the VOI
 * window and MONOCHROME1 inversion). Frontal films only: on a lateral film the mask is meaningless.
 * Read it against lung_focus_uniform, the value a CAM spread evenly over the model's input would
 * get (the lung fields' share of the input): a coarse map (3 x 3 at layer4 for a 96 px input) sits
 * near that chance level whatever the model attends to.
 *
 * Colour map: viridis, the 256-entry table published with matplotlib (CC0), embedded verbatim.
 * A value v in [0, 1] takes entry min(floor(v * 256), 255) (v < 0 -> 0, NaN -> 0), converted to
 * bytes as matplotlib's cmap(v, bytes=True) does (truncation of entry * 255). Dark blue-purple =
 * no attention, green = medium, yellow = the maximum. Perceptually uniform and readable in gray.
 * Overlay: out = (1 - a) * film_gray + a * viridis(cam) per channel, on 0..255 values rounded;
 * PS_OVERLAY_PROPORTIONAL (default) uses a = alpha * cam, so regions without attention show the
 * film untouched; PS_OVERLAY_CONSTANT uses a = alpha everywhere. Default alpha 0.6.
 */
#ifndef PS_GRADCAM_H
#define PS_GRADCAM_H

#include "ps_common.h"
#include "ps_image.h"
#include "ps_lung.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The model handle of ps_model.h (declared here so this header does not pull in ps_model.h). */
typedef struct ps_model ps_model;

typedef enum {
  PS_CAM_AUTO = 0,    /* CAM at layer4, Grad-CAM elsewhere */
  PS_CAM_CAM = 1,     /* fc weights, layer4 only, no backward */
  PS_CAM_GRADCAM = 2, /* autograd, any layer */
  PS_CAM_GRADCAMPP = 3
} ps_cam_method;

#define PS_GRADCAM_MAX_CLASSES 8

/* Zero-initialised is valid: layer4, predicted class, AUTO, model input size, lung mask on. */
typedef struct ps_gradcam_opts {
  int layer;             /* 1..4 (0: 4) */
  int use_class;         /* 1: explain class_index; 0: the predicted class */
  int class_index;       /* 0..K-1 when use_class */
  ps_cam_method method;
  int input_size;        /* network input side (0: the model's metadata input_size) */
  int no_lung;           /* 1: skip the lung mask and lung_focus */
  ps_lung_opts lung;     /* options for ps_lung_segment */
} ps_gradcam_opts;

typedef struct ps_gradcam_result {
  int width, height;       /* film size */
  float *cam;              /* (H, W) normalised map in [0, 1] */
  double raw_max;          /* maximum of the map before normalisation (layer units) */
  int map_w, map_h;        /* feature-map size of the layer */
  float *map;              /* (map_h, map_w) raw map after ReLU, before upsampling */
  int num_classes;
  float logits[PS_GRADCAM_MAX_CLASSES], probs[PS_GRADCAM_MAX_CLASSES]; /* (K) softmax */
  int predicted;           /* ps_model_label decision (binary: threshold on probs[1]) */
  int target_class;        /* class explained */
  int layer;               /* 1..4 */
  ps_cam_method method;    /* method actually used (AUTO resolved) */
  uint8_t *lung_mask;      /* (H, W) 0/1, NULL with opts.no_lung */
  ps_lung_info lung;       /* zeros with opts.no_lung */
  double lung_focus;       /* share of CAM mass inside the lung mask; NaN when undefined */
  double roi[4];           /* box of the film the model saw (x0, y0, x1, y1, fractions): {0, 0, 1, 1}
                              for a film model; a lungs model's ps_lung_roi box */
  int roi_fallback;        /* lungs model: 1 when the lung box fell back to the whole film */
  double lung_focus_uniform; /* the lung_focus a CAM uniform over the model's input (the film, or the
                              box) would get: lung-mask pixels in the input / input pixels. The
                              chance level: lung_focus / lung_focus_uniform > 1 means attention
                              concentrated on the lungs. NaN with opts.no_lung */
} ps_gradcam_result;

PS_API ps_gradcam_opts ps_gradcam_opts_default(void);
PS_API const char *ps_cam_method_name(ps_cam_method m); /* "auto", "cam", "gradcam", "gradcam++" */
/* "cam", "gradcam", "gradcam++" (also "gradcampp", "auto") -> method; PS_EINVAL otherwise. */
PS_API int ps_cam_method_parse(const char *s, ps_cam_method *out);

/* Explain one film (display-ready, not raw). Needs libtorch (PS_EUNSUPPORTED otherwise). The model
 * is used in eval mode (its mode is restored afterwards); grad mode is restored too. */
PS_API int ps_gradcam_compute(ps_model *m, const ps_image *img, const ps_gradcam_opts *opts,
                              ps_gradcam_result **out);
PS_API void ps_gradcam_result_free(ps_gradcam_result *r);

/* Share of the positive mass of cam (H, W) inside mask (H, W, non-zero = inside):
 * sum(max(cam,0) * [mask]) / sum(max(cam,0)); *focus = NaN (and PS_OK) when the sum is 0. */
PS_API int ps_gradcam_lung_focus(const float *cam, const uint8_t *mask, int width, int height, double *focus);

/* ---- rendering ------------------------------------------------------------------------------ */

/* viridis(v) as bytes (see the top of this header). */
PS_API void ps_colormap_viridis(float v, uint8_t rgb[3]);
/* The published float table entry i (0..255) as doubles in [0, 1]. */
PS_API void ps_colormap_viridis_entry(int i, double rgb[3]);

typedef enum { PS_OVERLAY_PROPORTIONAL = 0, PS_OVERLAY_CONSTANT = 1 } ps_overlay_mode;
/* Zero-initialised is valid (proportional, alpha 0.6). */
typedef struct ps_overlay_opts {
  ps_overlay_mode mode;
  double alpha;          /* (0, 1]; 0: 0.6 */
} ps_overlay_opts;

/* rgb (H, W, 3) = viridis(cam). */
PS_API int ps_gradcam_heatmap_rgb(const float *cam /* (H, W) */, int width, int height, uint8_t *rgb);
/* rgb (H, W, 3) = film gray blended with viridis(cam); film and cam share the size. */
PS_API int ps_gradcam_overlay_rgb(const ps_image *film, const float *cam /* (H, W) */,
                                  const ps_overlay_opts *opts, uint8_t *rgb);
/* rgb (H, W, 3) = film gray with the lung mask tinted (for checking the segmentation). */
PS_API int ps_lung_overlay_rgb(const ps_image *film, const uint8_t *mask /* (H, W) */, uint8_t *rgb);
/* Draw the outline of box (x0, y0, x1, y1 fractions, as ps_gradcam_result.roi) into rgb (H, W, 3)
 * in colour, lines of thickness pixels inside the box (0: max(1, min(W, H) / 300)). */
PS_API int ps_gradcam_draw_box_rgb(uint8_t *rgb, int width, int height, const double box[4], const uint8_t colour[3],
                                   int thickness);

/* Write (H, W) float32 as a NumPy .npy (version 1.0, '<f4', C order), atomically (temporary file
 * in the same folder, then rename). An existing file is replaced only when it is itself a .npy;
 * anything else (a film, a document) is refused with PS_EIO. */
PS_API int ps_gradcam_write_npy(const char *path, const float *data /* (H, W) */, int width, int height);

/* ---- audit over a manifest ------------------------------------------------------------------- */

typedef struct ps_audit_opts {
  const char *split;     /* only films of this split ("train", "val", "test"); NULL or "": all */
  double threshold;      /* flag films with lung_focus below this (0: 0.5) */
  ps_gradcam_opts cam;   /* per-film options */
  int limit;             /* at most this many films (0: all) */
  ps_progress_fn progress;
  void *progress_user;
  int shard_count;       /* > 0: audit only shard shard_index (0-based) of shard_count contiguous blocks
                            of the selected films (ps_infer_shard_range, as classify --shard): outdir
                            gets that block's lung_focus.csv rows and shard.json (which shard of which
                            model, manifest, split, limit, threshold, layer and method, and each film's
                            values for the summary) instead of summary.json; ps_gradcam_audit_merge
                            makes the whole audit from the shard folders. A shard refuses an outdir
                            holding summary.json, a whole audit one holding shard.json */
  int shard_index;
  const char *model_path; /* the model's file: required for a shard (its sha256 tells shards apart) */
} ps_audit_opts;

typedef struct ps_audit_class_summary {
  char name[32];         /* ground-truth class name for the model's task */
  int films;             /* films of this class scored */
  int flagged;           /* with lung_focus < threshold (or undefined) */
  double mean_focus, median_focus, min_focus; /* over films with a defined lung_focus */
  int correct;           /* predicted == truth */
} ps_audit_class_summary;

typedef struct ps_audit_summary {
  int films, scored, failed, flagged;
  double threshold;
  double mean_focus, median_focus;
  double mean_focus_uniform; /* mean lung_focus_uniform over the same films (the chance level) */
  int num_classes;
  ps_audit_class_summary classes[PS_GRADCAM_MAX_CLASSES];
  int roi;               /* the model's ps_roi (film / lungs) */
  int roi_fallbacks;     /* lungs model: scored films whose lung box fell back to the whole film */
} ps_audit_summary;

/* For every film of the manifest (path,label,subtype,patient_id,split,sha256; read by
 * ps_dataset_read_manifest) in the chosen split: Grad-CAM + lung mask + lung_focus. Writes
 * <outdir>/lung_focus.csv (path,truth,predicted,prob,target_class,lung_focus,flagged,lungs,
 * lung_area,error) and <outdir>/summary.json (the summary below plus the options), both atomically;
 * outdir is created when missing. A film that cannot be read is a CSV row with its error, not a
 * failure of the audit. The model's task decides the truth column (label or subtype). */
PS_API int ps_gradcam_audit(ps_model *m, const char *manifest, const char *outdir, const ps_audit_opts *opts,
                            ps_audit_summary *summary);
/* The whole audit from the ndirs folders of one audit's shards 1..N (any order): checks that they
 * are every shard of one audit once (the same model and manifest bytes, split, limit, threshold,
 * layer, method) and writes to outdir what the unsharded audit writes: lung_focus.csv with the same
 * rows, summary.json with the same summary (also in *summary). PS_EINVAL for a missing or duplicate
 * shard or shards of different audits, PS_EIO for an unreadable folder, PS_EFORMAT for a damaged
 * shard, each naming the folder; outdir must not hold a shard.json. */
PS_API int ps_gradcam_audit_merge(const char *const *shard_dirs, int ndirs, const char *outdir,
                                  ps_audit_summary *summary);

#ifdef __cplusplus
}
#endif
#endif
