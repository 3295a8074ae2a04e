/* ps_lung.h — classical lung-field segmentation of a frontal chest film (no model).
 *
 *   ps_image *film = NULL;                       // display orientation: anatomy bright, lungs dark
 *   ps_image_read("film.jpeg", NULL, &film);
 *   uint8_t *mask = NULL;                        // (H, W), 1 = lung field, 0 = elsewhere
 *   ps_lung_info info;
 *   if (ps_lung_segment(film, NULL, &mask, &info) == PS_OK)
 *     printf("%d lungs, %.1f%% of the film\n", info.lungs, 100 * info.area_fraction);
 *   free(mask);
 *   ps_image_free(film);
 *
 * The film is taken as display-ready ps_image data: [0, 1] with bone bright and air dark (what
 * ps_image_read gives for PNG/JPEG and for DICOM after the VOI window and MONOCHROME1 inversion).
 * Films read with ps_read_opts.raw are rejected (PS_EINVAL): their values are not windowed.
 *
 * Method (all on a working grid whose long side is opts.work_size, default 256 pixels):
 *   1. area-average downsampling, Gaussian smoothing (sigma 1.5 grid pixels), percentile
 *      contrast stretch (1st..99th percentile of the central 90% of the film);
 *   2. midline = brightest column band (spine + mediastinum) in the central 30..70% of width;
 *   3. for a ladder of thresholds (5th..70th percentile): dark pixels, opened with a disk
 *      (radius 2) to cut thin bridges (trachea, axilla), 4-connected components; components
 *      touching the film border are air outside the body and dropped; a component straddling
 *      the midline is split at the midline;
 *   4. every threshold's best left/right pair is scored (area, left/right balance, vertical
 *      overlap, solidity, position in the upper-middle of the film); the best pair wins;
 *   5. hysteresis: each lung follows its component through the higher thresholds while that
 *      extends it vertically (a missed upper lobe on pediatric films) and stays lung-like;
 *   6. each lung: closing (disk radius 3), hole filling, convex hull (so consolidations at the
 *      lung margin stay inside the field); bilinear upsampling of the mask to film size.
 * The result is a plausible lung field, not a diagnostic contour. info.lungs says how many lungs
 * were found (0, 1 or 2); with 0 the mask is all zero and the call still returns PS_OK. When only one lung is
 * found (typically because the other is opacified by consolidation or effusion) it is mirrored
 * across the midline so both fields are present (info.mirrored; opts.no_mirror turns this off).
 */
#ifndef PS_LUNG_H
#define PS_LUNG_H

#include "ps_common.h"
#include "ps_image.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Zero-initialised is valid. */
typedef struct ps_lung_opts {
  int work_size;  /* long side of the working grid in pixels (0: 256; 64..1024) */
  int no_hull;    /* 1: skip the per-lung convex hull (keep closing + hole filling only) */
  int no_mirror;  /* 1: when only one lung is found, do not mirror it across the midline */
} ps_lung_opts;

/* Side is in image coordinates: "left" = small x (the patient's right on a PA film). */
typedef struct ps_lung_info {
  int lungs;                 /* lung fields in the mask, one per side of the midline: 0, 1 or 2 */
  int lungs_found;           /* lungs found in the film itself: 0, 1 or 2 */
  int mirrored;              /* 1: the second field is the found lung mirrored across the midline */
  double area_fraction;      /* mask pixels / film pixels */
  double midline_x;          /* estimated midline, fraction of width */
  double threshold;          /* chosen threshold on the stretched working image, [0, 1] */
  double score;              /* score of the chosen pair (0 when none); higher = more lung-like */
  /* Per lung, [0] = image-left, [1] = image-right; zeros for a missing lung. Fractions of the
   * film's width / height / area. */
  double area[2];
  double centroid_x[2], centroid_y[2];
  double bbox[2][4];         /* x0, y0, x1, y1 (fractions, x1/y1 exclusive) */
  int roi_fallback;          /* set by ps_lung_roi only: 1 when its box is the whole film (no lung
                                found, or the lung box implausibly small or narrow) */
} ps_lung_info;

PS_API ps_lung_opts ps_lung_opts_default(void);

/* Segment the lung fields of a display-ready film. *mask: malloc'd (H, W) bytes, 1 inside a
 * lung field, 0 elsewhere; the caller frees it with free(). info may be NULL. */
PS_API int ps_lung_segment(const ps_image *img, const ps_lung_opts *opts, uint8_t **mask, ps_lung_info *info);

/* The same on a bare float (H, W) buffer in [0, 1] (anatomy bright). */
PS_API int ps_lung_segment_buffer(const float *data /* (H, W) */, int width, int height, const ps_lung_opts *opts,
                                  uint8_t **mask, ps_lung_info *info);

/* ---- region of interest: the padded lung bounding box -------------------------------------- *
 *
 *   double box[4];                                // x0, y0, x1, y1: fractions of width / height
 *   ps_lung_info info;
 *   ps_lung_roi(film, NULL, box, &info);          // info.roi_fallback: 1 = box is the whole film
 *   float *x = malloc(3 * 96 * 96 * sizeof(float));
 *   ps_lung_crop_input(film, box, 96, NULL, NULL, x);   // PIL crop + Resize + ToTensor + Normalize
 *
 * The box (all fractions of the film's own width W / height H, x1/y1 exclusive):
 *   1. the union of the lung fields' bounding boxes (ps_lung_segment with opts.lung: both fields,
 *      a mirrored one included);
 *   2. too narrow (width < min_width of the film: the finder kept the medial part of hazy lungs)
 *      -> widened about its centre to min_width; too flat (height < min_aspect x width in pixels:
 *      the finder missed the apices or the bases, typical of hazy pediatric films) -> grown
 *      equally up and down to that height; growth that would leave the film goes to the other side;
 *   3. margins: `margin` of the box width on the left and right, margin_top / margin_bottom of its
 *      height above / below (the apices are the part most often missed, hence the larger top);
 *   4. clipped to the film and snapped outwards to whole pixels (box * W, box * H are integers);
 *   5. no lung found, a lung box narrower than fallback_width of the film before step 2, or a final
 *      box below min_area of the film: the whole film {0, 0, 1, 1} and info.roi_fallback = 1
 *      (never an error for a readable film).
 * Defaults (chosen on the Kermany pediatric films of ../shared/data/kaggle and the adult films of
 * sample_data, see tests/test_lung.c): margin 0.08, margin_top 0.15, margin_bottom 0.12,
 * min_width 0.65, min_aspect 0.90, fallback_width 0.40, min_area 0.25. The finder's union box is
 * often too small on hazy pediatric films (apices, bases or the lateral edges of an opacified lung
 * missed), so the widening/heightening rules do most of the work there; on well-segmented films
 * only the margins apply. On the tightly framed Kermany films the box is typically 75-90 % of the
 * film (it trims the arms, neck, abdomen, corners and their labels), on adult films with more
 * body around the chest less. */

/* Zero-initialised is valid: every 0 field takes its default; a negative margin / min_width /
 * min_aspect / fallback_width means 0 (off). */
typedef struct ps_lung_roi_opts {
  ps_lung_opts lung;      /* segmentation options */
  double margin;          /* left/right margin, fraction of the lung box width (0: 0.08) */
  double margin_top;      /* fraction of the lung box height (0: 0.15) */
  double margin_bottom;   /* fraction of the lung box height (0: 0.12) */
  double min_width;       /* lung box widened to at least this fraction of the film width (0: 0.65) */
  double min_aspect;      /* lung box grown to at least this height / width in pixels (0: 0.90) */
  double fallback_width;  /* lung box narrower than this fraction of the film: whole film (0: 0.40) */
  double min_area;        /* final box below this fraction of the film: whole film (0: 0.25) */
} ps_lung_roi_opts;

PS_API ps_lung_roi_opts ps_lung_roi_opts_default(void);

/* Segment the film and return its lung ROI box (above). info (nullable) gets the segmentation's
 * info plus roi_fallback. */
PS_API int ps_lung_roi(const ps_image *img, const ps_lung_roi_opts *opts, double box[4], ps_lung_info *info);

/* The same box from an existing segmentation's info (e.g. the one Grad-CAM computed for its lung
 * mask) of a width x height film: pure arithmetic. fallback nullable. */
PS_API int ps_lung_roi_from_info(const ps_lung_info *info, int width, int height, const ps_lung_roi_opts *opts,
                                 double box[4], int *fallback);

/* Pixel box {x0, y0, x1, y1} (x1/y1 exclusive, at least one pixel, inside the film) of a fraction
 * box: rounded to the nearest pixel (exact for ps_lung_roi's snapped boxes). */
PS_API int ps_lung_box_pixels(const double box[4], int width, int height, int px[4]);

/* Network input from a box of the film — the one preprocessing path of every lungs or film model
 * (classify, evaluate, the training cache, Grad-CAM): the film quantised to 8 bits (round(v*255),
 * as ps_image_to_u8), the pixel box cropped (PIL Image.crop), PIL's 8-bit antialiased bilinear
 * resize to (size, size) (ps_resize_u8). box NULL: the whole film, i.e. exactly
 * ps_preprocess_tensor's pixels. out (size, size). */
PS_API int ps_lung_crop_input_u8(const ps_image *img, const double box[4], int size, uint8_t *out);
/* ... then ToTensor + Normalize per channel (gray replicated): out (3, size, size), bit-identical to
 * ps_preprocess_tensor_ex for box NULL or the whole film. mean/std NULL: ImageNet. */
PS_API int ps_lung_crop_input(const ps_image *img, const double box[4], int size, const float mean[3],
                              const float std[3], float *out);

/* ---- roi "lungmask": the lung box and nothing but the dilated lung fields ------------------- *
 *
 *   double box[4]; int fb; uint8_t *mask = NULL;  // mask: ps_lung_segment's (H, W) lung fields
 *   ps_lung_roi_mask(film, box, &fb, &mask);      // mask NULL when the box fell back (no masking)
 *   ps_lung_mask_input_u8(film, box, mask, 224, u8);   // what a lungmask model sees, 8-bit
 *   free(mask);
 *
 * The input is the lungs input (ps_lung_crop_input_u8 of the same box), then every output pixel
 * whose source pixel lies farther than PS_LUNGMASK_DILATE x the box width (in film pixels) from
 * the lung mask is set to PS_LUNGMASK_FILL_U8. Pixels inside are exactly the lungs input's.
 *   - source pixel of output (i, j) (exact integer nearest-neighbour rule, the centre of the output
 *     pixel mapped into the crop): sx = px0 + floor((2 i + 1) cw / (2 size)),
 *     sy = py0 + floor((2 j + 1) ch / (2 size)), with ps_lung_box_pixels' box px and cw, ch its
 *     width and height. (PIL's NEAREST resize accumulates the coordinate in floating point and
 *     differs from this rule on some sizes, by one source pixel where the centre falls exactly
 *     on a pixel edge; the integer rule is the definition here.)
 *   - kept: some mask pixel (mx, my) with (sx - mx)^2 + (sy - my)^2 <= r^2, r = dilate x cw: the
 *     mask dilated by a Euclidean disk of radius r.
 *   - fill: 114 = round(0.449 x 255) = round(114.495), 0.449 the mean of ImageNet's channel means,
 *     so the filled pixels are ~0 after Normalize (-0.166, -0.040, +0.182 per channel, -0.008 on
 *     average; 115 would give +0.010). The float input is ToTensor + Normalize of these 8-bit
 *     pixels: the SAME pixels in both.
 *   - dilation 4 % of the box width, chosen on the 14 sample films (test_box_sample_films, at
 *     224 px): the input must hold the lung fields that a second, differently made segmentation
 *     (384 grid, no hull) finds. Undilated, the worst film keeps 83 % of them (median 99.3 %);
 *     2 %: 91 %; 4 %: 94 % on the worst film, >= 99.6 % on 12 of 14, with a median 38 % of the
 *     input shown (62 % gray); 6 % and 8 % reach 98 / 99.9 % but show 47 / 55 % of the input,
 *     giving back much of the mediastinum, ribs and soft tissue the mode exists to hide.
 *   - no lungs (the box fell back to the whole film, roi_fallback): no masking at all.
 */
#define PS_LUNGMASK_FILL_U8 114
#define PS_LUNGMASK_DILATE 0.04

/* keep (size, size): 1 where the lungmask input shows the film, 0 where it is filled (above).
 * mask (width, height) of 0 / non-zero; box as ps_lung_box_pixels; dilate >= 0 (fraction of the
 * box width; PS_LUNGMASK_DILATE for lungmask models). */
PS_API int ps_lung_mask_keep(const uint8_t *mask, int width, int height, const double box[4], double dilate, int size,
                             uint8_t *keep);
/* The lungmask input of a box and mask (NULL mask: exactly ps_lung_crop_input(_u8)). */
PS_API int ps_lung_mask_input_u8(const ps_image *img, const double box[4], const uint8_t *mask, int size, uint8_t *out);
PS_API int ps_lung_mask_input(const ps_image *img, const double box[4], const uint8_t *mask, int size,
                              const float mean[3], const float std[3], float *out);
/* Segment the film once (default options) and return the lung box and the film's (H, W) lung mask
 * (malloc'd, caller frees; *mask = NULL when the box fell back to the whole film). */
PS_API int ps_lung_roi_mask(const ps_image *img, double box[4], int *fallback, uint8_t **mask);

/* The box a model with this roi (PS_ROI_FILM / PS_ROI_LUNGS / PS_ROI_LUNGMASK, ps_common.h) sees:
 * the whole film, or ps_lung_roi with default options (lungs and lungmask: the same box). box and
 * fallback nullable. */
PS_API int ps_lung_roi_for(const ps_image *img, int roi, double box[4], int *fallback);
/* A model's network input for a film: ps_lung_roi_for + ps_lung_crop_input(_u8), and for lungmask
 * ps_lung_roi_mask + ps_lung_mask_input(_u8). The float input is always ToTensor + Normalize of
 * the 8-bit one. */
PS_API int ps_lung_roi_input_u8(const ps_image *img, int roi, int size, uint8_t *out, double box[4], int *fallback);
PS_API int ps_lung_roi_input(const ps_image *img, int roi, int size, const float mean[3], const float std[3],
                             float *out, double box[4], int *fallback);

/* "film" / "lungs" / "lungmask" (NULL for another value); parse: PS_EINVAL naming the value
 * otherwise. */
PS_API const char *ps_roi_name(int roi);
PS_API int ps_roi_parse(const char *s, int *roi);

#ifdef __cplusplus
}
#endif
#endif
