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
} ps_lung_info;

PS_API ps_lung_opts ps_lung_opts_default(void);

/* Segment the lung fields of a display-ready film. *mask: malloc'd (H, W) bytes, 1 inside a
 * lung field, 0 elsewhere; the caller frees it with free(). info may be NULL. */
PS_API int ps_lung_segment(const ps_image *img, const ps_lung_opts *opts, uint8_t **mask, ps_lung_info *info);

/* The same on a bare float (H, W) buffer in [0, 1] (anatomy bright). */
PS_API int ps_lung_segment_buffer(const float *data /* (H, W) */, int width, int height, const ps_lung_opts *opts,
                                  uint8_t **mask, ps_lung_info *info);

#ifdef __cplusplus
}
#endif
#endif
