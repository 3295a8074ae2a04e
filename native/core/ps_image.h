/* ps_image.h — the one in-memory film: float grayscale (H, W) plus what the file said about it.
 *
 *   ps_image *img = NULL;
 *   if (ps_image_create(512, 512, &img) == PS_OK) {
 *     img->data[y * img->width + x] = 0.5f;   // display-ready films hold [0, 1], 1 = bright
 *     ps_image_free(img);
 *   }
 *
 * Readers (native/image: ps_image_read for PNG/JPEG/DICOM, dicom/: ps_dicom_read) fill
 * ps_film_meta; all string fields are NUL-terminated and "" when the file does not say.
 */
#ifndef PS_IMAGE_H
#define PS_IMAGE_H

#include "ps_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { PS_FORMAT_UNKNOWN = 0, PS_FORMAT_PNG, PS_FORMAT_JPEG, PS_FORMAT_DICOM } ps_format;

typedef struct ps_film_meta {
  ps_format format;
  char patient_id[68];
  char study_uid[68];
  char series_uid[68];
  char sop_uid[68];
  char modality[20];
  char view_position[20];
  char body_part[68];
  char photometric[20];     /* MONOCHROME1, MONOCHROME2, RGB, PALETTE COLOR ... */
  char transfer_syntax[68]; /* DICOM transfer syntax UID */
  int rows, columns;        /* as stored in the file */
  int components;           /* samples per pixel in the file */
  int bits_stored;          /* 8 for 8-bit PNG/JPEG */
  double pixel_spacing[2];  /* mm (row, column); 0 when absent */
  int pixel_spacing_is_imager; /* 1 when taken from ImagerPixelSpacing */
  double window_center, window_width; /* VOI window applied (modality units); width 0 if none */
  double rescale_slope, rescale_intercept;
  int frames;               /* number of frames in the file; the first is read */
  int has_patient_age;      /* 1 when the header gives the patient's age (DICOM only) */
  double patient_age_years; /* PatientAge (AS "nnnD/W/M/Y"; a bare number is read as years), else
                               StudyDate (or Series/Acquisition/Content date) - PatientBirthDate */
} ps_film_meta;

typedef struct ps_image {
  int width, height;
  float *data;        /* (H, W) row-major. Display-ready: [0, 1], 1 = bright anatomy (bone).
                         With ps_read_opts.raw: modality values (after rescale), not windowed. */
  int is_raw;         /* 1 when data holds modality values rather than [0, 1] */
  ps_film_meta meta;
} ps_image;

/* Options for reading untrusted films. Zero-initialised is valid (defaults apply). */
typedef struct ps_read_opts {
  int64_t max_pixels;  /* refuse films with more pixels (0: 100 megapixels) */
  int64_t max_bytes;   /* refuse files larger than this (0: 1 GiB) */
  int raw;             /* 1: keep modality values (no VOI window, no MONOCHROME1 inversion) */
  int min_side;        /* > 0: a JPEG may be decoded at a reduced IDCT scale (1/2, 1/4, 1/8: the
                        * smallest that keeps both sides >= min_side), much faster for a large film
                        * that is shrunk anyway; equals Pillow's Image.draft(mode, (min_side,
                        * min_side)), not its full-size decode. 0: full size */
} ps_read_opts;

#define PS_DEFAULT_MAX_PIXELS ((int64_t)100 * 1000 * 1000)
#define PS_DEFAULT_MAX_BYTES ((int64_t)1 << 30)

PS_API ps_read_opts ps_read_opts_default(void);
/* Effective limits of opts (NULL or zero fields -> defaults). */
PS_API int64_t ps_read_opts_max_pixels(const ps_read_opts *opts);
PS_API int64_t ps_read_opts_max_bytes(const ps_read_opts *opts);

/* New zero-filled image; PS_EINVAL for non-positive size, PS_ENOMEM. */
PS_API int ps_image_create(int width, int height, ps_image **out);
PS_API int ps_image_clone(const ps_image *src, ps_image **out);
PS_API void ps_image_free(ps_image *img);

PS_API const char *ps_format_name(ps_format f); /* "png", "jpeg", "dicom", "unknown" */

#ifdef __cplusplus
}
#endif
#endif
