/* Internal to native/image: the decoders behind ps_image_read. Not installed, not exported. */
#ifndef PS_IMAGE_INTERNAL_H
#define PS_IMAGE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "ps_image.h"

/* Decode a whole PNG / JPEG held in memory; name is used in error messages. */
int ps__png_decode(const uint8_t *buf, size_t size, const char *name, const ps_read_opts *opts, ps_image **out);
int ps__jpeg_decode(const uint8_t *buf, size_t size, const char *name, const ps_read_opts *opts, ps_image **out);

/* Pillow's ITU-R 601 luminance on 8-bit RGB (Convert.c L24): exact integer rounding. */
static inline uint8_t ps__luma8(unsigned r, unsigned g, unsigned b) {
  return (uint8_t)((r * 19595u + g * 38470u + b * 7471u + 0x8000u) >> 16);
}

#endif
