/* The lung region of interest (padded lung bounding box) and the one network-input path built on
 * it; see ps_lung.h. */
#include <limits.h>
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

const char *ps_roi_name(int roi) {
  return roi == PS_ROI_FILM ? "film" : roi == PS_ROI_LUNGS ? "lungs" : roi == PS_ROI_LUNGMASK ? "lungmask" : NULL;
}

int ps_roi_parse(const char *s, int *roi) {
  if (!s || !roi) return ps_error(PS_EINVAL, "roi: NULL argument");
  if (!strcmp(s, "film")) *roi = PS_ROI_FILM;
  else if (!strcmp(s, "lungs")) *roi = PS_ROI_LUNGS;
  else if (!strcmp(s, "lungmask")) *roi = PS_ROI_LUNGMASK;
  else return ps_error(PS_EINVAL, "roi: '%.40s' is not film, lungs or lungmask", s);
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

/* ps_lung_roi, optionally keeping the segmentation's mask (*keep_mask; NULL on error) */
static int roi_segment(const ps_image *img, const ps_lung_roi_opts *opts, double box[4], ps_lung_info *info,
                       uint8_t **keep_mask) {
  if (keep_mask) *keep_mask = NULL;
  if (!img || !img->data || !box) return ps_error(PS_EINVAL, "lung roi: NULL image or box");
  ps_lung_roi_opts o = opts ? *opts : ps_lung_roi_opts_default();
  uint8_t *mask = NULL;
  ps_lung_info in;
  memset(&in, 0, sizeof in);
  int st = ps_lung_segment(img, &o.lung, &mask, &in);
  if (st) {
    free(mask);
    return st;
  }
  int fb = 1;
  if ((st = ps_lung_roi_from_info(&in, img->width, img->height, &o, box, &fb))) {
    free(mask);
    return st;
  }
  in.roi_fallback = fb;
  if (info) *info = in;
  if (keep_mask) *keep_mask = mask;
  else free(mask);
  return PS_OK;
}

int ps_lung_roi(const ps_image *img, const ps_lung_roi_opts *opts, double box[4], ps_lung_info *info) {
  return roi_segment(img, opts, box, info, NULL);
}

int ps_lung_roi_mask(const ps_image *img, double box[4], int *fallback, uint8_t **mask) {
  if (!mask || !box) return ps_error(PS_EINVAL, "lung roi: NULL box or mask");
  ps_lung_info in;
  memset(&in, 0, sizeof in);
  uint8_t *m = NULL;
  int st = roi_segment(img, NULL, box, &in, &m);
  if (st) return st;
  if (in.roi_fallback) free(m), m = NULL; /* no lungs: the whole film, unmasked */
  if (fallback) *fallback = in.roi_fallback;
  *mask = m;
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

static int check_std(const float std[3]) {
  if (std)
    for (int c = 0; c < 3; c++)
      if (!(std[c] > 0)) return ps_error(PS_EINVAL, "lung roi: std[%d] must be positive", c);
  return PS_OK;
}

int ps_lung_mask_keep(const uint8_t *mask, int width, int height, const double box[4], double dilate, int size,
                      uint8_t *keep) {
  if (!mask || !box || !keep) return ps_error(PS_EINVAL, "lung mask: NULL argument");
  if (size <= 0) return ps_error(PS_EINVAL, "lung mask: invalid size %d", size);
  if (!(dilate >= 0 && dilate <= 1)) return ps_error(PS_EINVAL, "lung mask: dilation %g outside [0, 1]", dilate);
  int px[4], st;
  if ((st = ps_lung_box_pixels(box, width, height, px))) return st;
  int cw = px[2] - px[0], ch = px[3] - px[1];
  double r = dilate * cw, r2 = r * r;
  int R = (int)floor(r);
  /* the only film pixels that can be within r of a sampled pixel */
  int rx0 = px[0] - R < 0 ? 0 : px[0] - R, rx1 = px[2] + R > width ? width : px[2] + R;
  int ry0 = px[1] - R < 0 ? 0 : px[1] - R, ry1 = px[3] + R > height ? height : px[3] + R;
  int rw = rx1 - rx0;
  int *sx = malloc(sizeof(int) * (size_t)size), *sy = malloc(sizeof(int) * (size_t)size);
  int *last = malloc(sizeof(int) * (size_t)rw);
  int *g = malloc(sizeof(int) * (size_t)rw * size); /* per sampled row: column distance to the mask */
  if (!sx || !sy || !last || !g) {
    st = ps_error(PS_ENOMEM, "lung mask: out of memory for a %dx%d box", cw, ch);
    goto done;
  }
  for (int i = 0; i < size; i++) {
    sx[i] = px[0] + (int)(((int64_t)2 * i + 1) * cw / ((int64_t)2 * size));
    sy[i] = px[1] + (int)(((int64_t)2 * i + 1) * ch / ((int64_t)2 * size));
  }
  const int BIG = INT_MAX / 4;
  for (size_t k = 0; k < (size_t)rw * size; k++) g[k] = BIG;
  /* vertical distance to the nearest mask pixel in the column: a forward and a backward sweep,
   * recorded at the sampled rows (sy is non-decreasing) */
  for (int x = 0; x < rw; x++) last[x] = -BIG;
  for (int y = ry0, j = 0; y < ry1 && j < size; y++) {
    const uint8_t *row = mask + (size_t)y * width + rx0;
    for (int x = 0; x < rw; x++)
      if (row[x]) last[x] = y;
    for (; j < size && sy[j] == y; j++)
      for (int x = 0; x < rw; x++) g[(size_t)j * rw + x] = last[x] == -BIG ? BIG : y - last[x];
  }
  for (int x = 0; x < rw; x++) last[x] = BIG;
  for (int y = ry1 - 1, j = size - 1; y >= ry0 && j >= 0; y--) {
    const uint8_t *row = mask + (size_t)y * width + rx0;
    for (int x = 0; x < rw; x++)
      if (row[x]) last[x] = y;
    for (; j >= 0 && sy[j] == y; j--)
      for (int x = 0; x < rw; x++) {
        int d = last[x] == BIG ? BIG : last[x] - y;
        if (d < g[(size_t)j * rw + x]) g[(size_t)j * rw + x] = d;
      }
  }
  /* keep: some column within R whose vertical distance d gives dx^2 + d^2 <= r^2 */
  for (int j = 0; j < size; j++) {
    const int *gj = g + (size_t)j * rw;
    for (int i = 0; i < size; i++) {
      int x0 = sx[i] - R < rx0 ? rx0 : sx[i] - R, x1 = sx[i] + R >= rx1 ? rx1 - 1 : sx[i] + R;
      uint8_t k = 0;
      for (int x = x0; x <= x1 && !k; x++) {
        int d = gj[x - rx0];
        if (d > R) continue;
        double dx = x - sx[i];
        k = dx * dx + (double)d * d <= r2;
      }
      keep[(size_t)j * size + i] = k;
    }
  }
  st = PS_OK;
done:
  free(sx);
  free(sy);
  free(last);
  free(g);
  return st;
}

int ps_lung_mask_input_u8(const ps_image *img, const double box[4], const uint8_t *mask, int size, uint8_t *out) {
  int st = ps_lung_crop_input_u8(img, box, size, out);
  if (st || !mask) return st;
  static const double whole_box[4] = {0, 0, 1, 1};
  size_t m = (size_t)size * size;
  uint8_t *keep = malloc(m);
  if (!keep) return ps_error(PS_ENOMEM, "lung mask: out of memory");
  st = ps_lung_mask_keep(mask, img->width, img->height, box ? box : whole_box, PS_LUNGMASK_DILATE, size, keep);
  if (st == PS_OK)
    for (size_t i = 0; i < m; i++)
      if (!keep[i]) out[i] = PS_LUNGMASK_FILL_U8;
  free(keep);
  return st;
}

/* The float inputs are the 8-bit ones normalised: argument checks and the 8-bit scratch of size^2
 * (freed by the caller) shared by ps_lung_mask_input and ps_lung_roi_input. */
static int float_input_begin(const ps_image *img, int size, const float std[3], const float *out, uint8_t **small) {
  if (!img || !img->data || !out) return ps_error(PS_EINVAL, "lung roi: NULL image or output");
  if (size <= 0) return ps_error(PS_EINVAL, "lung roi: invalid size %d", size);
  int st = check_std(std);
  if (st) return st;
  *small = malloc((size_t)size * size);
  return *small ? PS_OK : ps_error(PS_ENOMEM, "lung roi: out of memory");
}

int ps_lung_mask_input(const ps_image *img, const double box[4], const uint8_t *mask, int size, const float mean[3],
                       const float std[3], float *out) {
  uint8_t *small = NULL;
  int st = float_input_begin(img, size, std, out, &small);
  if (st) return st;
  st = ps_lung_mask_input_u8(img, box, mask, size, small);
  if (st == PS_OK) st = ps_preprocess_normalize_u8(small, size, size, mean, std, out);
  free(small);
  return st;
}

int ps_lung_crop_input(const ps_image *img, const double box[4], int size, const float mean[3], const float std[3],
                       float *out) {
  return ps_lung_mask_input(img, box, NULL, size, mean, std, out);
}

int ps_lung_roi_for(const ps_image *img, int roi, double box[4], int *fallback) {
  if (!img || !img->data) return ps_error(PS_EINVAL, "lung roi: NULL image");
  double b[4];
  int fb = 0, st = PS_OK;
  if (roi == PS_ROI_FILM) {
    whole(b);
  } else if (roi == PS_ROI_LUNGS || roi == PS_ROI_LUNGMASK) {
    ps_lung_info in;
    if ((st = ps_lung_roi(img, NULL, b, &in))) return st;
    fb = in.roi_fallback;
  } else {
    return ps_error(PS_EINVAL, "lung roi: unknown roi %d (film, lungs or lungmask)", roi);
  }
  if (box) memcpy(box, b, sizeof b);
  if (fallback) *fallback = fb;
  return PS_OK;
}

int ps_lung_roi_input_u8(const ps_image *img, int roi, int size, uint8_t *out, double box[4], int *fallback) {
  double b[4];
  int st;
  if (roi == PS_ROI_LUNGMASK) {
    uint8_t *mask = NULL;
    if ((st = ps_lung_roi_mask(img, b, fallback, &mask))) return st;
    if (box) memcpy(box, b, sizeof b);
    st = ps_lung_mask_input_u8(img, b, mask, size, out);
    free(mask);
    return st;
  }
  if ((st = ps_lung_roi_for(img, roi, b, fallback))) return st;
  if (box) memcpy(box, b, sizeof b);
  return ps_lung_crop_input_u8(img, roi == PS_ROI_FILM ? NULL : b, size, out);
}

int ps_lung_roi_input(const ps_image *img, int roi, int size, const float mean[3], const float std[3], float *out,
                      double box[4], int *fallback) {
  uint8_t *small = NULL;
  int st = float_input_begin(img, size, std, out, &small);
  if (st) return st;
  st = ps_lung_roi_input_u8(img, roi, size, small, box, fallback);
  if (st == PS_OK) st = ps_preprocess_normalize_u8(small, size, size, mean, std, out);
  free(small);
  return st;
}
