#include "ps_image.h"

#include <stdlib.h>
#include <string.h>

ps_read_opts ps_read_opts_default(void) {
  ps_read_opts o;
  memset(&o, 0, sizeof o);
  o.max_pixels = PS_DEFAULT_MAX_PIXELS;
  o.max_bytes = PS_DEFAULT_MAX_BYTES;
  return o;
}

int64_t ps_read_opts_max_pixels(const ps_read_opts *opts) {
  return (opts && opts->max_pixels > 0) ? opts->max_pixels : PS_DEFAULT_MAX_PIXELS;
}

int64_t ps_read_opts_max_bytes(const ps_read_opts *opts) {
  return (opts && opts->max_bytes > 0) ? opts->max_bytes : PS_DEFAULT_MAX_BYTES;
}

int ps_image_create(int width, int height, ps_image **out) {
  if (!out) return ps_error(PS_EINVAL, "image: NULL out pointer");
  *out = NULL;
  if (width <= 0 || height <= 0)
    return ps_error(PS_EINVAL, "image: invalid size %dx%d", width, height);
  ps_image *img = calloc(1, sizeof *img);
  if (!img) return ps_error(PS_ENOMEM, "image: out of memory");
  img->data = calloc((size_t)width * (size_t)height, sizeof(float));
  if (!img->data) {
    free(img);
    return ps_error(PS_ENOMEM, "image: out of memory for %dx%d", width, height);
  }
  img->width = width;
  img->height = height;
  img->meta.rescale_slope = 1.0;
  img->meta.frames = 1;
  *out = img;
  return PS_OK;
}

int ps_image_clone(const ps_image *src, ps_image **out) {
  if (!src) return ps_error(PS_EINVAL, "image: NULL source");
  int st = ps_image_create(src->width, src->height, out);
  if (st != PS_OK) return st;
  float *data = (*out)->data;
  **out = *src;
  (*out)->data = data;
  memcpy(data, src->data, (size_t)src->width * (size_t)src->height * sizeof(float));
  return PS_OK;
}

void ps_image_free(ps_image *img) {
  if (!img) return;
  free(img->data);
  free(img);
}

const char *ps_format_name(ps_format f) {
  switch (f) {
    case PS_FORMAT_PNG: return "png";
    case PS_FORMAT_JPEG: return "jpeg";
    case PS_FORMAT_DICOM: return "dicom";
    default: return "unknown";
  }
}
