/* Internal to native/image: the decoders behind ps_image_read. Not installed, not exported. */
#ifndef PS_IMAGE_INTERNAL_H
#define PS_IMAGE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "ps_image.h"

/* Decoder warnings: damaged data a decoder reported but could get past (libjpeg-turbo's
 * "Corrupt JPEG data: ...", a libpng CRC or benign error on the image data). A decoder given a
 * list (ps_image_read_warnings) appends the decoder's text to it and goes on; given NULL
 * (ps_image_read) it refuses the film with PS_EFORMAT and that text. */
typedef struct ps__warnings {
  char **text; /* (n) owned, NUL-terminated */
  int n, cap;
} ps__warnings;

/* Append one warning; PS_OK or PS_ENOMEM (the list is left as it was). */
int ps__warn_add(ps__warnings *w, const char *fmt, ...) PS_PRINTF(2, 3);
void ps__warn_clear(ps__warnings *w);

/* Decode a whole PNG / JPEG held in memory; name is used in error messages; warn as above. */
int ps__png_decode(const uint8_t *buf, size_t size, const char *name, const ps_read_opts *opts, ps__warnings *warn,
                   ps_image **out);
int ps__jpeg_decode(const uint8_t *buf, size_t size, const char *name, const ps_read_opts *opts, ps__warnings *warn,
                    ps_image **out);

/* Pillow's ITU-R 601 luminance on 8-bit RGB (Convert.c L24): exact integer rounding. */
static inline uint8_t ps__luma8(unsigned r, unsigned g, unsigned b) {
  return (uint8_t)((r * 19595u + g * 38470u + b * 7471u + 0x8000u) >> 16);
}

#endif
