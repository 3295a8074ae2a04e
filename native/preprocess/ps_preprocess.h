/* ps_preprocess.h — resize, window, network input tensors and training augmentations.
 *
 *   ps_image *film = NULL, *small = NULL;
 *   ps_image_read("film.jpeg", NULL, &film);
 *   ps_image_resize(film, 512, 512, &small);             // PIL Image.resize(BILINEAR)
 *   float *x = malloc(3 * 224 * 224 * sizeof(float));    // (C=3, H, W)
 *   ps_preprocess_tensor(film, 224, x);                  // torchvision Resize+ToTensor+Normalize
 *
 *   ps_augment_opts aug = ps_augment_opts_default();     // crop + jitter + flip + rotation
 *   float *y = malloc(224 * 224 * sizeof(float));
 *   ps_augment(small->data, 512, 512, &aug, seed, y, 224, 224);   // same seed -> same output
 *
 * Resampling is Pillow's ImagingResample with the bilinear ("triangle") filter: separable,
 * support scaled by the downscale factor (antialiased), coefficients normalised per output pixel,
 * horizontal pass first. ps_image_resize computes in float (Pillow mode "F" arithmetic);
 * ps_resize_u8 and ps_preprocess_tensor use Pillow's 8-bit fixed-point path (22 fractional bits,
 * rounding, 8-bit intermediate), which is what torchvision's Resize does to a PIL image.
 */
#ifndef PS_PREPROCESS_H
#define PS_PREPROCESS_H

#include "ps_common.h"
#include "ps_image.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- resize ------------------------------------------------------------------------------ */

/* New image of width x height, antialiased bilinear (PIL Image.resize(BILINEAR) on mode "F").
 * meta is copied from src. Same size returns a copy. */
PS_API int ps_image_resize(const ps_image *src, int width, int height, ps_image **out);

/* Float resize of the source box [x0, x1) x [y0, y1) (may be fractional, inside the source)
 * into dst (dh, dw): PIL Image.resize(size, BILINEAR, box=(x0, y0, x1, y1)) on mode "F". */
PS_API int ps_resize_box_f32(const float *src /* (sh, sw) */, int sw, int sh, double x0, double y0, double x1,
                             double y1, float *dst /* (dh, dw) */, int dw, int dh);

/* 8-bit resize, bit-exact with PIL Image.resize(BILINEAR) on mode "L". */
PS_API int ps_resize_u8(const uint8_t *src /* (sh, sw) */, int sw, int sh, uint8_t *dst /* (dh, dw) */, int dw,
                        int dh);

/* Film to 8-bit: round(clamp(v, 0, 1) * 255) (what ps_image_write_png stores). */
PS_API void ps_image_to_u8(const ps_image *img, uint8_t *dst /* (H, W) */);

/* ---- network input ----------------------------------------------------------------------- */

#define PS_IMAGENET_MEAN {0.485f, 0.456f, 0.406f}
#define PS_IMAGENET_STD {0.229f, 0.224f, 0.225f}

/* out (3, size, size) = torchvision Compose([Resize((size, size)), ToTensor(),
 * Normalize(ImageNet mean, std)]) applied to the film as an 8-bit PIL RGB image (gray replicated).
 * The film is quantised to 8 bits first (round(v * 255)), exactly as saving it would. */
PS_API int ps_preprocess_tensor(const ps_image *img, int size, float *out /* (3, size, size) */);

/* Same with explicit per-channel mean/std (NULL: ImageNet). */
PS_API int ps_preprocess_tensor_ex(const ps_image *img, int size, const float mean[3], const float std[3],
                                   float *out /* (3, size, size) */);

/* 8-bit gray (H, W) to the normalised (3, H, W) tensor as ToTensor + Normalize do:
 * out[c] = (v / 255 - mean[c]) / std[c] in float32. NULL mean/std: ImageNet; PS_EINVAL for std <= 0. */
PS_API int ps_preprocess_normalize_u8(const uint8_t *px /* (H, W) */, int w, int h, const float mean[3],
                                      const float std[3], float *out /* (3, H, W) */);

/* Gray (H, W) in [0, 1] (e.g. an augmented buffer) to the normalised (3, H, W) tensor, without
 * quantisation: out[c] = (v - mean[c]) / std[c]. NULL mean/std: ImageNet. */
PS_API void ps_preprocess_normalize(const float *gray /* (H, W) */, int w, int h, const float mean[3],
                                    const float std[3], float *out /* (3, H, W) */);

/* ---- windowing --------------------------------------------------------------------------- */

/* Values at percentiles p_lo, p_hi (in [0, 100], p_lo < p_hi) of the film, by a 4096-bin
 * histogram over [min, max] (error below (max - min) / 4096). */
PS_API int ps_image_percentiles(const ps_image *img, double p_lo, double p_hi, double *lo, double *hi);

/* In place: v -> clamp((v - lo) / (hi - lo), 0, 1). hi must exceed lo. */
PS_API int ps_image_window(ps_image *img, double lo, double hi);

/* ---- augmentation (pure functions of the input and a seed) ------------------------------- */

/* Tiny PRNG with explicit state: xoshiro256** seeded through splitmix64. The augmentations draw
 * from the same distributions as torchvision's transforms, but from this generator, not torch's:
 * a seed here does not reproduce a torch.manual_seed run (the building blocks below, given the
 * same parameters, do reproduce torchvision.transforms.functional). */
typedef struct ps_rng {
  uint64_t s[4];
} ps_rng;
PS_API void ps_rng_seed(ps_rng *r, uint64_t seed);
PS_API uint64_t ps_rng_next(ps_rng *r);
PS_API double ps_rng_uniform(ps_rng *r);                 /* [0, 1), 53 bits */
PS_API double ps_rng_range(ps_rng *r, double lo, double hi); /* [lo, hi) */
PS_API int ps_rng_int(ps_rng *r, int n);                 /* [0, n), n > 0 */

typedef struct ps_augment_opts {
  /* Random resized crop (torchvision RandomResizedCrop.get_params, bilinear resize of the box):
   * area fraction in [crop_scale_min, crop_scale_max], log-uniform aspect ratio (w/h) in
   * [crop_ratio_min, crop_ratio_max], 10 tries then the central crop clamped to the ratio range.
   * crop_scale_max 0: no crop, the whole input is resized to the output size. */
  double crop_scale_min, crop_scale_max;
  double crop_ratio_min, crop_ratio_max; /* 0: 3/4 and 4/3 */
  /* ColorJitter semantics: brightness factor b uniform in [max(0, 1 - brightness), 1 + brightness],
   * v -> clamp(b v); contrast factor c likewise, v -> clamp(c v + (1 - c) mean(v)); the two are
   * applied in a random order. 0: off. */
  double brightness, contrast;
  int hflip;          /* 1: mirror left-right with probability 0.5 */
  double rotate_deg;  /* > 0: rotate by an angle uniform in [-rotate_deg, rotate_deg] about the
                         centre, bilinear, outside filled with fill */
  float fill;
} ps_augment_opts;

/* Scale 0.7-1.0, ratio 3/4-4/3, brightness 0.2, contrast 0.2, hflip off (chest films are not
 * symmetric: the heart is on the left), rotation 5 degrees, fill 0. */
PS_API ps_augment_opts ps_augment_opts_default(void);
/* Validate o and fill the crop-ratio defaults (0 -> 3/4, 4/3) in place, as ps_augment does:
 * PS_EINVAL with the reason for an empty or out-of-range crop, negative jitter or rotation > 180. */
PS_API int ps_augment_opts_check(ps_augment_opts *o);

/* dst (dh, dw) = augmentation of src (h, w) drawn from seed: crop+resize, flip, rotation,
 * brightness/contrast. Deterministic for a given (src, opts, seed); src and dst must not overlap.
 * Thread-safe (no global state). */
PS_API int ps_augment(const float *src /* (h, w) */, int w, int h, const ps_augment_opts *opts, uint64_t seed,
                      float *dst /* (dh, dw) */, int dw, int dh);

/* The building blocks, deterministic given their parameters (torchvision.transforms.functional). */
/* adjust_brightness: v -> clamp(v * factor, 0, 1), in place over n values. */
PS_API void ps_adjust_brightness(float *v, size_t n, float factor);
/* adjust_contrast: v -> clamp(factor * v + (1 - factor) * mean(v), 0, 1), in place. */
PS_API void ps_adjust_contrast(float *v, size_t n, float factor);
/* hflip, in place over (h, w). */
PS_API void ps_hflip(float *v, int w, int h);
/* Rotate (h, w) by deg degrees counter-clockwise about the centre, bilinear, fill outside:
 * torchvision F.rotate(tensor, deg, BILINEAR, fill=[fill]). src and dst must not overlap. */
PS_API void ps_rotate(const float *src, int w, int h, double deg, float fill, float *dst);
/* RandomResizedCrop.get_params: box (x, y, cw, ch) inside (w, h). */
PS_API void ps_random_crop_box(ps_rng *r, int w, int h, double scale_min, double scale_max, double ratio_min,
                               double ratio_max, int *x, int *y, int *cw, int *ch);

#ifdef __cplusplus
}
#endif
#endif
