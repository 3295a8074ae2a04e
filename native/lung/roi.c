/* The lung region of interest (padded lung bounding box) and the one network-input path built on
 * it; see ps_lung.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ps_lung.h"
#include "ps_preprocess.h"

ps_lung_roi_opts ps_lung_roi_opts_default(void) {
  ps_lung_roi_opts o;
  memset(&o, 0, sizeof o);
  o.lung = ps_lung_opts_default();
  o.margin = 0.08;
  o.margin_top = 0.15;
  o.margin_bottom = 0.12;
  o.min_width = 0.65;
  o.min_aspect = 0.90;
  o.fallback_width = 0.40;
  o.min_area = 0.25;
  return o;
}

/* 0 -> default, < 0 -> 0 */
static double pick(double v, double def) { return v == 0 ? def : (v < 0 ? 0 : v); }

const char *ps_roi_name(int roi) { return roi == PS_ROI_FILM ? "film" : roi == PS_ROI_LUNGS ? "lungs" : NULL; }

int ps_roi_parse(const char *s, int *roi) {
  if (!s || !roi) return ps_error(PS_EINVAL, "roi: NULL argument");
  if (!strcmp(s, "film")) *roi = PS_ROI_FILM;
  else if (!strcmp(s, "lungs")) *roi = PS_ROI_LUNGS;
  else return ps_error(PS_EINVAL, "roi: '%.40s' is not film or lungs", s);
  return PS_OK;
}

static void whole(double box[4]) { box[0] = 0, box[1] = 0, box[2] = 1, box[3] = 1; }

/* Grow [*a, *b) to length len inside [0, 1], half each way, the overflow going to the other side. */
static void grow(double *a, double *b, double len) {
  if (len > 1) len = 1;
  double need = len - (*b - *a);
  if (need <= 0) return;
  double lo = *a - need / 2, hi = *b + need / 2;
  if (lo < 0) hi -= lo, lo = 0;
  if (hi > 1) lo -= hi - 1, hi = 1;
  *a = lo < 0 ? 0 : lo;
  *b = hi;
}

int ps_lung_roi_from_info(const ps_lung_info *info, int width, int height, const ps_lung_roi_opts *opts,
                          double box[4], int *fallback) {
  if (!info || !box) return ps_error(PS_EINVAL, "lung roi: NULL argument");
  if (width <= 0 || height <= 0) return ps_error(PS_EINVAL, "lung roi: film size %dx%d", width, height);
  ps_lung_roi_opts o = opts ? *opts : ps_lung_roi_opts_default();
  double mx = pick(o.margin, 0.08), mt = pick(o.margin_top, 0.15), mb = pick(o.margin_bottom, 0.12);
  double minw = pick(o.min_width, 0.65), minasp = pick(o.min_aspect, 0.90), fbw = pick(o.fallback_width, 0.40);
  double mina = pick(o.min_area, 0.25);
  if (!(mx <= 10 && mt <= 10 && mb <= 10 && minw <= 1 && minasp <= 100 && fbw <= 1 && mina <= 1))
    return ps_error(PS_EINVAL, "lung roi: options out of range (margins <= 10, widths and areas <= 1)");
  int fb = 1;
  whole(box);
  double x0 = 1, y0 = 1, x1 = 0, y1 = 0;
  for (int s = 0; s < 2; s++) {
    if (!(info->area[s] > 0)) continue;
    x0 = fmin(x0, info->bbox[s][0]), y0 = fmin(y0, info->bbox[s][1]);
    x1 = fmax(x1, info->bbox[s][2]), y1 = fmax(y1, info->bbox[s][3]);
  }
  if (info->lungs > 0 && x1 > x0 && y1 > y0 && x1 - x0 >= fbw) {
    grow(&x0, &x1, minw);
    double hmin = minasp * (x1 - x0) * width / height; /* height as a fraction of H */
    grow(&y0, &y1, hmin);
    double w = x1 - x0, h = y1 - y0;
    double b[4] = {x0 - mx * w, y0 - mt * h, x1 + mx * w, y1 + mb * h};
    /* clip, snap outwards to whole pixels */
    double px0 = floor(fmax(0, b[0]) * width + 1e-9), px1 = ceil(fmin(1, b[2]) * width - 1e-9);
    double py0 = floor(fmax(0, b[1]) * height + 1e-9), py1 = ceil(fmin(1, b[3]) * height - 1e-9);
    if (px0 < 0) px0 = 0;
    if (py0 < 0) py0 = 0;
    if (px1 > width) px1 = width;
    if (py1 > height) py1 = height;
    if (px1 > px0 && py1 > py0 && (px1 - px0) * (py1 - py0) >= mina * width * height) {
      box[0] = px0 / width, box[1] = py0 / height, box[2] = px1 / width, box[3] = py1 / height;
      fb = 0;
    }
  }
  if (fallback) *fallback = fb;
  return PS_OK;
}

int ps_lung_roi(const ps_image *img, const ps_lung_roi_opts *opts, double box[4], ps_lung_info *info) {
  if (!img || !img->data || !box) return ps_error(PS_EINVAL, "lung roi: NULL image or box");
  ps_lung_roi_opts o = opts ? *opts : ps_lung_roi_opts_default();
  uint8_t *mask = NULL;
  ps_lung_info in;
  memset(&in, 0, sizeof in);
  int st = ps_lung_segment(img, &o.lung, &mask, &in);
  free(mask);
  if (st) return st;
  int fb = 1;
  if ((st = ps_lung_roi_from_info(&in, img->width, img->height, &o, box, &fb))) return st;
  in.roi_fallback = fb;
  if (info) *info = in;
  return PS_OK;
}

int ps_lung_box_pixels(const double box[4], int width, int height, int px[4]) {
  if (!box || !px) return ps_error(PS_EINVAL, "lung roi: NULL box");
  if (width <= 0 || height <= 0) return ps_error(PS_EINVAL, "lung roi: film size %dx%d", width, height);
  for (int i = 0; i < 4; i++)
    if (!(box[i] >= 0 && box[i] <= 1)) return ps_error(PS_EINVAL, "lung roi: box value %g outside [0, 1]", box[i]);
  px[0] = (int)lround(box[0] * width), px[1] = (int)lround(box[1] * height);
  px[2] = (int)lround(box[2] * width), px[3] = (int)lround(box[3] * height);
  if (px[2] <= px[0] || px[3] <= px[1])
    return ps_error(PS_EINVAL, "lung roi: empty box (%g, %g, %g, %g) on a %dx%d film", box[0], box[1], box[2], box[3],
                    width, height);
  return PS_OK;
}

int ps_lung_crop_input_u8(const ps_image *img, const double box[4], int size, uint8_t *out) {
  if (!img || !img->data || !out) return ps_error(PS_EINVAL, "lung roi: NULL image or output");
  if (size <= 0) return ps_error(PS_EINVAL, "lung roi: invalid size %d", size);
  int px[4] = {0, 0, img->width, img->height}, st;
  if (box && (st = ps_lung_box_pixels(box, img->width, img->height, px))) return st;
  int cw = px[2] - px[0], ch = px[3] - px[1];
  uint8_t *u8 = malloc((size_t)cw * ch);
  if (!u8) return ps_error(PS_ENOMEM, "lung roi: out of memory for a %dx%d crop", cw, ch);
  /* quantise row by row through ps_image_to_u8 itself (one rounding rule for every path) */
  for (int y = 0; y < ch; y++) {
    ps_image row;
    memset(&row, 0, sizeof row);
    row.width = cw, row.height = 1;
    row.data = img->data + (size_t)(px[1] + y) * img->width + px[0];
    ps_image_to_u8(&row, u8 + (size_t)y * cw);
  }
  st = ps_resize_u8(u8, cw, ch, out, size, size);
  free(u8);
  return st;
}

static const float imagenet_mean[3] = PS_IMAGENET_MEAN;
static const float imagenet_std[3] = PS_IMAGENET_STD;

int ps_lung_crop_input(const ps_image *img, const double box[4], int size, const float mean[3], const float std[3],
                       float *out) {
  if (!img || !img->data || !out) return ps_error(PS_EINVAL, "lung roi: NULL image or output");
  if (size <= 0) return ps_error(PS_EINVAL, "lung roi: invalid size %d", size);
  if (!mean) mean = imagenet_mean;
  if (!std) std = imagenet_std;
  for (int c = 0; c < 3; c++)
    if (!(std[c] > 0)) return ps_error(PS_EINVAL, "lung roi: std[%d] must be positive", c);
  size_t m = (size_t)size * size;
  uint8_t *small = malloc(m);
  if (!small) return ps_error(PS_ENOMEM, "lung roi: out of memory");
  int st = ps_lung_crop_input_u8(img, box, size, small);
  if (st == PS_OK) {
    for (int c = 0; c < 3; c++) {
      float *o = out + (size_t)c * m;
      for (size_t i = 0; i < m; i++) {
        float v = (float)small[i] / 255.0f; /* ToTensor */
        o[i] = (v - mean[c]) / std[c];      /* Normalize (as ps_preprocess_tensor_ex) */
      }
    }
  }
  free(small);
  return st;
}

int ps_lung_roi_for(const ps_image *img, int roi, double box[4], int *fallback) {
  if (!img || !img->data) return ps_error(PS_EINVAL, "lung roi: NULL image");
  double b[4];
  int fb = 0, st = PS_OK;
  if (roi == PS_ROI_FILM) {
    whole(b);
  } else if (roi == PS_ROI_LUNGS) {
    ps_lung_info in;
    if ((st = ps_lung_roi(img, NULL, b, &in))) return st;
    fb = in.roi_fallback;
  } else {
    return ps_error(PS_EINVAL, "lung roi: unknown roi %d (film or lungs)", roi);
  }
  if (box) memcpy(box, b, sizeof b);
  if (fallback) *fallback = fb;
  return PS_OK;
}

int ps_lung_roi_input_u8(const ps_image *img, int roi, int size, uint8_t *out, double box[4], int *fallback) {
  double b[4];
  int st = ps_lung_roi_for(img, roi, b, fallback);
  if (st) return st;
  if (box) memcpy(box, b, sizeof b);
  return ps_lung_crop_input_u8(img, roi == PS_ROI_FILM ? NULL : b, size, out);
}

int ps_lung_roi_input(const ps_image *img, int roi, int size, const float mean[3], const float std[3], float *out,
                      double box[4], int *fallback) {
  double b[4];
  int st = ps_lung_roi_for(img, roi, b, fallback);
  if (st) return st;
  if (box) memcpy(box, b, sizeof b);
  return ps_lung_crop_input(img, roi == PS_ROI_FILM ? NULL : b, size, mean, std, out);
}
