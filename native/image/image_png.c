/* PNG films through libpng: decode any PNG to float gray the way Pillow's convert("L") sees it,
 * and write 8-bit gray / RGB PNGs atomically without ever replacing a file we did not write.
 * Damaged data refuses the film (or is listed when the caller collects warnings): a CRC error in
 * any chunk, and libpng's warnings and benign errors on the image data (critical chunks, e.g.
 * "IDAT: Too much image data"). Complaints about ancillary metadata the decoder does not use (an
 * ICC profile libpng dislikes, a duplicate gAMA) go to the debug log only. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image_internal.h"
#include "ps_image_io.h"

/* ---- decoding ---------------------------------------------------------------------------- */

typedef struct {
  const uint8_t *buf;
  size_t size, pos;
  const char *name;
  int status;      /* status to return when libpng longjmps */
  char msg[256];   /* libpng's or our message */
  ps__warnings *warn; /* NULL: damaged data refuses the film */
  char damaged[256];  /* the first damaged-data warning ("" when none) */
  int nomem;          /* a warning could not be listed */
} png_src;

static void png_err_fn(png_structp png, png_const_charp msg) {
  png_src *s = png_get_error_ptr(png);
  if (s->status == PS_OK) {
    s->status = PS_EFORMAT;
    snprintf(s->msg, sizeof s->msg, "%s", msg ? msg : "libpng error");
  }
  png_longjmp(png, 1);
}

/* libpng's warnings, and its benign errors (warnings by default when reading). Those raised
 * while reading a critical chunk (IHDR, PLTE, IDAT, IEND) are about the pixels; CRC errors
 * (warnings only while collecting, see png_set_crc_action below) mean the file was damaged. */
static void png_warn_fn(png_structp png, png_const_charp msg) {
  png_src *s = png_get_error_ptr(png);
  if (!msg) msg = "warning";
  png_uint_32 chunk = png_get_io_chunk_type(png);
  int ancillary = (chunk >> 29) & 1; /* bit 5 of the chunk type's first letter */
  if (ancillary && !strstr(msg, "CRC error")) {
    ps_log(PS_LOG_DEBUG, "png: %s: %s", s->name, msg);
    return;
  }
  if (!s->damaged[0]) snprintf(s->damaged, sizeof s->damaged, "%s", msg);
  if (s->warn && ps__warn_add(s->warn, "png: %s", msg) != PS_OK) s->nomem = 1;
}

static void png_read_fn(png_structp png, png_bytep out, size_t n) {
  png_src *s = png_get_io_ptr(png);
  if (n > s->size - s->pos) {
    s->status = PS_EFORMAT;
    snprintf(s->msg, sizeof s->msg, "truncated (the file ends at byte %zu, its data goes on past %zu)", s->size,
             s->pos + n);
    png_error(png, s->msg);
  }
  memcpy(out, s->buf + s->pos, n);
  s->pos += n;
}

/* One decoded row (after libpng's transformations) to floats. */
static void row_to_float(const uint8_t *row, int w, int channels, int depth16, float *dst) {
  if (!depth16) {
    for (int x = 0; x < w; x++) {
      const uint8_t *p = row + (size_t)x * channels;
      unsigned v = channels >= 3 ? ps__luma8(p[0], p[1], p[2]) : p[0];
      dst[x] = (float)v / 255.0f;
    }
  } else {
    for (int x = 0; x < w; x++) {
      const uint8_t *p = row + (size_t)x * channels * 2;
      double v;
      if (channels >= 3) {
        unsigned r = (p[0] << 8) | p[1], g = (p[2] << 8) | p[3], b = (p[4] << 8) | p[5];
        v = (r * 0.299 + g * 0.587 + b * 0.114) / 65535.0;
      } else {
        v = ((p[0] << 8) | p[1]) / 65535.0;
      }
      dst[x] = (float)v;
    }
  }
}

int ps__png_decode(const uint8_t *buf, size_t size, const char *name, const ps_read_opts *opts, ps__warnings *warn,
                   ps_image **out) {
  png_src src = {buf, size, 0, name, PS_OK, "", warn, "", 0};
  png_structp png = NULL;
  png_infop info = NULL;
  ps_image *volatile img = NULL;
  uint8_t *volatile rows = NULL;   /* one row, or the whole image when interlaced */
  png_bytep *volatile rowp = NULL;
  int st = PS_OK;

  png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_err_fn, png_warn_fn);
  if (!png) return ps_error(PS_ENOMEM, "png: out of memory reading %s", name);
  info = png_create_info_struct(png);
  if (!info) {
    png_destroy_read_struct(&png, NULL, NULL);
    return ps_error(PS_ENOMEM, "png: out of memory reading %s", name);
  }
  if (setjmp(png_jmpbuf(png))) {
    st = src.status != PS_OK ? src.status : PS_EFORMAT;
    if (strstr(src.msg, "CRC error")) ps_error(st, "png: damaged data in %s (libpng: %s)", name, src.msg);
    else ps_error(st, "png: %s in %s", src.msg[0] ? src.msg : "malformed PNG", name);
    goto fail;
  }
  png_set_read_fn(png, &src, png_read_fn);
  /* A CRC error is an error in every chunk (libpng only warns for ancillary ones and drops
   * them); collecting, it is a listed warning and the data is used as it is. */
  if (warn) png_set_crc_action(png, PNG_CRC_WARN_USE, PNG_CRC_WARN_DISCARD);
  else png_set_crc_action(png, PNG_CRC_ERROR_QUIT, PNG_CRC_ERROR_QUIT);
  /* Our own max_pixels decides; libpng's 1,000,000-per-side default would refuse valid films. */
  png_set_user_limits(png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);
  png_read_info(png, info);

  png_uint_32 w32 = 0, h32 = 0;
  int depth = 0, ctype = 0, interlace = 0;
  png_get_IHDR(png, info, &w32, &h32, &depth, &ctype, &interlace, NULL, NULL);
  int64_t max_pixels = ps_read_opts_max_pixels(opts);
  if (w32 == 0 || h32 == 0 || w32 > 0x7fffffffu || h32 > 0x7fffffffu) {
    st = ps_error(PS_EFORMAT, "png: invalid size %ux%u in %s", (unsigned)w32, (unsigned)h32, name);
    goto fail;
  }
  if ((int64_t)w32 * (int64_t)h32 > max_pixels) {
    st = ps_error(PS_ELIMIT, "png: %s is %ux%u = %lld pixels, over the limit of %lld", name, (unsigned)w32,
                  (unsigned)h32, (long long)w32 * (long long)h32, (long long)max_pixels);
    goto fail;
  }
  int w = (int)w32, h = (int)h32;
  int file_channels = png_get_channels(png, info);

  if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if ((ctype == PNG_COLOR_TYPE_GRAY || ctype == PNG_COLOR_TYPE_GRAY_ALPHA) && depth < 8)
    png_set_expand_gray_1_2_4_to_8(png);
  int passes = png_set_interlace_handling(png);
  png_read_update_info(png, info);
  int channels = png_get_channels(png, info);
  int depth16 = png_get_bit_depth(png, info) == 16;
  size_t rowbytes = png_get_rowbytes(png, info);
  if (channels < 1 || channels > 4 || rowbytes < (size_t)w * channels * (depth16 ? 2 : 1)) {
    st = ps_error(PS_EFORMAT, "png: unexpected row layout in %s", name);
    goto fail;
  }

  ps_image *im = NULL;
  st = ps_image_create(w, h, &im);
  if (st != PS_OK) {
    ps_error(st, "png: out of memory for %dx%d film %s", w, h, name);
    goto fail;
  }
  img = im;
  if (passes > 1) {
    if ((size_t)h > SIZE_MAX / rowbytes) {
      st = ps_error(PS_ENOMEM, "png: %s too large to deinterlace", name);
      goto fail;
    }
    rows = malloc(rowbytes * (size_t)h);
    rowp = malloc(sizeof(png_bytep) * (size_t)h);
    if (!rows || !rowp) {
      st = ps_error(PS_ENOMEM, "png: out of memory deinterlacing %s", name);
      goto fail;
    }
    for (int y = 0; y < h; y++) rowp[y] = rows + (size_t)y * rowbytes;
    png_read_image(png, rowp);
    for (int y = 0; y < h; y++) row_to_float(rowp[y], w, channels, depth16, img->data + (size_t)y * w);
  } else {
    rows = malloc(rowbytes);
    if (!rows) {
      st = ps_error(PS_ENOMEM, "png: out of memory reading %s", name);
      goto fail;
    }
    for (int y = 0; y < h; y++) {
      png_read_row(png, rows, NULL);
      row_to_float(rows, w, channels, depth16, img->data + (size_t)y * w);
    }
  }
  png_read_end(png, NULL);
  if (src.nomem) {
    st = ps_error(PS_ENOMEM, "png: out of memory reading %s", name);
    goto fail;
  }
  if (!warn && src.damaged[0]) {
    st = ps_error(PS_EFORMAT, "png: damaged data in %s (libpng: %s)", name, src.damaged);
    goto fail;
  }

  img->meta.format = PS_FORMAT_PNG;
  img->meta.rows = h;
  img->meta.columns = w;
  img->meta.components = file_channels;
  img->meta.bits_stored = depth;
  {
    const char *pm = "MONOCHROME2";
    if (ctype == PNG_COLOR_TYPE_PALETTE) pm = "PALETTE COLOR";
    else if (ctype & PNG_COLOR_MASK_COLOR) pm = "RGB";
    snprintf(img->meta.photometric, sizeof img->meta.photometric, "%s", pm);
  }
  free(rows);
  free(rowp);
  png_destroy_read_struct(&png, &info, NULL);
  *out = img;
  return PS_OK;

fail:
  free(rows);
  free(rowp);
  ps_image_free(img);
  png_destroy_read_struct(&png, &info, NULL);
  return st;
}

/* ---- writing ----------------------------------------------------------------------------- */

#define PS_PNG_SOFTWARE "PneumoScope"

/* 1 when path is an existing PNG carrying our Software text chunk (written by this library). */
static int is_our_png(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  uint8_t head[512];
  size_t n = fread(head, 1, sizeof head, f);
  fclose(f);
  static const uint8_t magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (n < 8 || memcmp(head, magic, 8) != 0) return 0;
  static const char key[] = "tEXtSoftware\0" PS_PNG_SOFTWARE;
  return memmem(head, n, key, sizeof key - 1) != NULL;
}

/* Checks before writing path: not a directory, not someone else's file. */
static int check_target(const char *path) {
  if (!path || !*path) return ps_error(PS_EINVAL, "png: no output file name given");
  struct stat st;
  if (stat(path, &st) == 0) {
    if (S_ISDIR(st.st_mode)) return ps_error(PS_EIO, "png: cannot write %s: it is a directory", path);
    if (!S_ISREG(st.st_mode)) return ps_error(PS_EIO, "png: cannot write %s: not a regular file", path);
    if (!is_our_png(path))
      return ps_error(PS_EIO, "png: refusing to overwrite %s: it exists and was not written by PneumoScope", path);
  }
  return PS_OK;
}

typedef struct {
  char msg[256];
} png_wctx;

static void png_werr_fn(png_structp png, png_const_charp msg) {
  png_wctx *c = png_get_error_ptr(png);
  snprintf(c->msg, sizeof c->msg, "%s", msg ? msg : "libpng error");
  png_longjmp(png, 1);
}

static void png_wwarn_fn(png_structp png, png_const_charp msg) {
  (void)png;
  ps_log(PS_LOG_DEBUG, "png: %s", msg ? msg : "warning");
}

/* rows: (H, W, channels) bytes; channels 1 (gray) or 3 (RGB), or from floats when fimg. */
static int write_png_atomic(const char *path, int w, int h, int channels, const uint8_t *bytes, const float *fimg) {
  int st = check_target(path);
  if (st != PS_OK) return st;
  if (w <= 0 || h <= 0) return ps_error(PS_EINVAL, "png: invalid size %dx%d for %s", w, h, path);

  size_t plen = strlen(path);
  char *tmp = malloc(plen + 16);
  if (!tmp) return ps_error(PS_ENOMEM, "png: out of memory");
  snprintf(tmp, plen + 16, "%s.tmp-XXXXXX", path);
  int fd = mkstemp(tmp);
  if (fd < 0) {
    int e = errno;
    free(tmp);
    return ps_error(PS_EIO, "png: cannot create a file next to %s: %s", path, strerror(e));
  }
  {
    mode_t um = umask(022);
    umask(um);
    if (fchmod(fd, 0666 & ~um) != 0) { /* keep mkstemp's 0600 */
    }
  }
  FILE *volatile f = fdopen(fd, "wb");
  png_wctx ctx = {""};
  png_structp png = NULL;
  png_infop info = NULL;
  uint8_t *volatile row = NULL;
  if (!f) {
    close(fd);
    st = ps_error(PS_EIO, "png: cannot write %s", tmp);
    goto fail;
  }
  png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, png_werr_fn, png_wwarn_fn);
  if (!png || !(info = png_create_info_struct(png))) {
    st = ps_error(PS_ENOMEM, "png: out of memory writing %s", path);
    goto fail;
  }
  if (setjmp(png_jmpbuf(png))) {
    st = ps_error(PS_EIO, "png: writing %s: %s", path, ctx.msg);
    goto fail;
  }
  png_init_io(png, f);
  png_set_compression_level(png, 6);
  png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_text text;
  memset(&text, 0, sizeof text);
  text.compression = PNG_TEXT_COMPRESSION_NONE;
  text.key = (png_charp) "Software";
  text.text = (png_charp)PS_PNG_SOFTWARE;
  png_set_text(png, info, &text, 1);
  png_write_info(png, info);
  if (fimg) {
    row = malloc((size_t)w);
    if (!row) png_error(png, "out of memory");
    for (int y = 0; y < h; y++) {
      const float *src = fimg + (size_t)y * w;
      for (int x = 0; x < w; x++) {
        float v = src[x];
        /* NaN -> 0; round half up; clamp */
        float s = v == v ? v * 255.0f + 0.5f : 0.0f;
        row[x] = s <= 0.0f ? 0 : s >= 255.0f ? 255 : (uint8_t)s;
      }
      png_write_row(png, row);
    }
  } else {
    for (int y = 0; y < h; y++) png_write_row(png, (png_bytep)(bytes + (size_t)y * w * channels));
  }
  png_write_end(png, info);
  png_destroy_write_struct(&png, &info);
  free(row);
  row = NULL;
  if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
    int e = errno;
    fclose(f);
    f = NULL;
    st = ps_error(PS_EIO, "png: writing %s: %s", path, strerror(e));
    goto fail;
  }
  if (fclose(f) != 0) {
    f = NULL;
    st = ps_error(PS_EIO, "png: writing %s: %s", path, strerror(errno));
    goto fail;
  }
  f = NULL;
  /* Re-check just before replacing (the target may have appeared meanwhile). */
  st = check_target(path);
  if (st != PS_OK) goto fail;
  if (rename(tmp, path) != 0) {
    st = ps_error(PS_EIO, "png: cannot rename %s to %s: %s", tmp, path, strerror(errno));
    goto fail;
  }
  free(tmp);
  return PS_OK;

fail:
  if (png) png_destroy_write_struct(&png, info ? &info : NULL);
  free(row);
  if (f) fclose(f);
  unlink(tmp);
  free(tmp);
  return st;
}

int ps_image_write_png(const ps_image *img, const char *path) {
  if (!img || !img->data) return ps_error(PS_EINVAL, "png: NULL image for %s", path ? path : "(null)");
  return write_png_atomic(path, img->width, img->height, 1, NULL, img->data);
}

int ps_image_write_png_rgb(const uint8_t *rgb, int w, int h, const char *path) {
  if (!rgb) return ps_error(PS_EINVAL, "png: NULL pixels for %s", path ? path : "(null)");
  return write_png_atomic(path, w, h, 3, rgb, NULL);
}
