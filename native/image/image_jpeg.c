/* JPEG films through TurboJPEG: accurate integer IDCT + fancy upsampling (Pillow's libjpeg
 * defaults), gray kept as is, RGB/CMYK reduced to luminance exactly as Pillow's convert("L").
 * libjpeg-turbo's warnings ("Corrupt JPEG data: ...": damaged entropy-coded data it fills in
 * with guesses) refuse the film, or are listed when the caller collects them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "image_internal.h"
#include "ps_image_io.h"

#define JMSG_LENGTH_MAX_PS 200 /* libjpeg's JMSG_LENGTH_MAX (jpeglib.h, not included here) */

typedef struct {
  int complete; /* an EOI marker ends the entropy-coded data */
  int adobe;    /* an APP14 "Adobe" segment is present (CMYK stored inverted) */
  int sof;      /* SOF marker code seen (0xC0..0xCF), 0 when none */
  int precision;
} jpeg_scan;

/* Walk the marker segments: tells truncated files from complete ones independently of
 * libjpeg's (non-fatal) "premature end" warning, and finds the Adobe marker. */
static void jpeg_walk(const uint8_t *b, size_t n, jpeg_scan *s) {
  memset(s, 0, sizeof *s);
  size_t p = 2; /* after SOI */
  while (p + 1 < n) {
    if (b[p] != 0xff) { /* not at a marker: entropy-coded data or garbage; resync */
      p++;
      continue;
    }
    uint8_t m = b[p + 1];
    if (m == 0xff) { /* fill byte */
      p++;
      continue;
    }
    if (m == 0x00 || (m >= 0xd0 && m <= 0xd7) || m == 0x01) { /* stuffed byte, RSTn, TEM */
      p += 2;
      continue;
    }
    if (m == 0xd9) {
      s->complete = 1;
      return;
    }
    if (m == 0xd8) { /* a second SOI: stop */
      return;
    }
    if (p + 3 >= n) return;
    size_t len = ((size_t)b[p + 2] << 8) | b[p + 3];
    if (len < 2 || p + 2 + len > n) return; /* segment runs past the end: truncated */
    const uint8_t *seg = b + p + 4;
    size_t seglen = len - 2;
    if (m == 0xee && seglen >= 5 && memcmp(seg, "Adobe", 5) == 0) s->adobe = 1;
    if (m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc && !s->sof) {
      s->sof = m;
      if (seglen >= 1) s->precision = seg[0];
    }
    p += 2 + len;
    /* after SOS, entropy-coded data follows: the loop above skips it byte by byte */
  }
}

/* Pillow 9.4 Convert.c cmyk2rgb (on Pillow's CMYK values), then rgb2l. */
static inline uint8_t muldiv255(unsigned a, unsigned b) {
  unsigned t = a * b + 128;
  return (uint8_t)(((t >> 8) + t) >> 8);
}
static inline uint8_t clip8(int v) { return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v; }

/* 8-bit samples -> [0, 1] floats: vectorised for AVX2 where the CPU has it (chosen at load time). */
__attribute__((target_clones("avx2", "default"), optimize("O3"))) static void unit_floats(const uint8_t *pix, size_t n,
                                                                                          float *d) {
  for (size_t i = 0; i < n; i++) d[i] = (float)pix[i] / 255.0f;
}

int ps__jpeg_decode(const uint8_t *buf, size_t size, const char *name, const ps_read_opts *opts, ps__warnings *warn,
                    ps_image **out) {
  int st = PS_OK;
  ps_image *img = NULL;
  uint8_t *pix = NULL;
  tjhandle tj = tjInitDecompress();
  if (!tj) return ps_error(PS_ENOMEM, "jpeg: cannot start the decoder for %s: %s", name, tjGetErrorStr2(NULL));

  jpeg_scan scan;
  jpeg_walk(buf, size, &scan);
  int w = 0, h = 0, subsamp = 0, cs = 0;
  char header_warning[JMSG_LENGTH_MAX_PS] = ""; /* the header was read, with this warning */
  if (tjDecompressHeader3(tj, buf, (unsigned long)size, &w, &h, &subsamp, &cs) != 0) {
    const char *e = tjGetErrorStr2(tj);
    if (tjGetErrorCode(tj) == TJERR_WARNING && w > 0 && h > 0) { /* e.g. stray bytes between segments */
      if (!warn) {
        st = ps_error(PS_EFORMAT, "jpeg: damaged data in %s (libjpeg-turbo: %s)", name, e);
        goto done;
      }
      snprintf(header_warning, sizeof header_warning, "%s", e);
    } else {
      if (scan.precision == 12 || scan.precision == 16)
        st = ps_error(PS_EUNSUPPORTED, "jpeg: %d-bit JPEG not supported in %s", scan.precision, name);
      else if (scan.sof == 0xc3 || scan.sof == 0xc7 || scan.sof == 0xcb || scan.sof == 0xcf)
        st = ps_error(PS_EUNSUPPORTED, "jpeg: lossless JPEG not supported in %s", name);
      else
        st = ps_error(PS_EFORMAT, "jpeg: %s in %s", e && *e ? e : "malformed header", name);
      goto done;
    }
  }
  if (w <= 0 || h <= 0) {
    st = ps_error(PS_EFORMAT, "jpeg: no frame header (%s) in %s", scan.complete ? "invalid size" : "truncated", name);
    goto done;
  }
  int64_t max_pixels = ps_read_opts_max_pixels(opts);
  if ((int64_t)w * h > max_pixels) {
    st = ps_error(PS_ELIMIT, "jpeg: %s is %dx%d = %lld pixels, over the limit of %lld", name, w, h,
                  (long long)w * h, (long long)max_pixels);
    goto done;
  }
  if (!scan.complete) {
    st = ps_error(PS_EFORMAT, "jpeg: truncated (no end-of-image marker) in %s", name);
    goto done;
  }
  /* Reduced-scale decoding (opts->min_side): the largest of libjpeg's 1/8, 1/4, 1/2 IDCT scales s
   * with s * min_side <= both sides, sides rounded up: Pillow's Image.draft(mode, (min_side,
   * min_side)) exactly. The film's own size stays in meta.rows/columns. */
  const int fw = w, fh = h;
  if (opts && opts->min_side > 0) {
    const int64_t room = (fw < fh ? fw : fh) / opts->min_side;
    for (int s = 8; s > 1; s /= 2)
      if (s <= room) {
        w = TJSCALED(fw, ((tjscalingfactor){1, s}));
        h = TJSCALED(fh, ((tjscalingfactor){1, s}));
        break;
      }
  }
  int pf, comps;
  switch (cs) {
    case TJCS_GRAY: pf = TJPF_GRAY, comps = 1; break;
    case TJCS_CMYK:
    case TJCS_YCCK: pf = TJPF_CMYK, comps = 4; break;
    default: pf = TJPF_RGB, comps = 3; break;
  }
  st = ps_image_create(w, h, &img);
  if (st != PS_OK) {
    ps_error(st, "jpeg: out of memory for %dx%d film %s", w, h, name);
    goto done;
  }
  int bpp = tjPixelSize[pf];
  pix = malloc((size_t)w * h * bpp);
  if (!pix) {
    st = ps_error(PS_ENOMEM, "jpeg: out of memory for %dx%d film %s", w, h, name);
    goto done;
  }
  /* Stop at the first warning: a film whose scan libjpeg had to patch up is refused (Pillow
   * ignores these warnings and gives the patched pixels; it refuses only when a stray marker in
   * the damaged scan turns into a fatal error). */
  char first[JMSG_LENGTH_MAX_PS] = "";
  if (tjDecompress2(tj, buf, (unsigned long)size, pix, w, 0, h, pf, TJFLAG_ACCURATEDCT | TJFLAG_STOPONWARNING) != 0) {
    snprintf(first, sizeof first, "%s", tjGetErrorStr2(tj));
    if (tjGetErrorCode(tj) != TJERR_WARNING) {
      st = ps_error(PS_EFORMAT, "jpeg: %s in %s", first, name);
      goto done;
    }
    if (!warn) {
      st = ps_error(PS_EFORMAT, "jpeg: damaged data in %s (libjpeg-turbo: %s)", name, first);
      goto done;
    }
    /* Collecting: decode again to the end. libjpeg-turbo keeps the text of the first warning
     * only and reports a fatal error after a warning as a warning too: a text other than the
     * first warning's is that fatal error. */
    if (tjDecompress2(tj, buf, (unsigned long)size, pix, w, 0, h, pf, TJFLAG_ACCURATEDCT) != 0) {
      const char *e = tjGetErrorStr2(tj);
      if (tjGetErrorCode(tj) != TJERR_WARNING || strcmp(e, first) != 0) {
        st = ps_error(PS_EFORMAT, "jpeg: %s in %s (after the warning: %s)", e, name, first);
        goto done;
      }
    }
    if ((st = ps__warn_add(warn, "jpeg: %s", first)) != PS_OK) {
      ps_error(st, "jpeg: out of memory reading %s", name);
      goto done;
    }
  }
  /* (the decode reads the header again and normally stops at the same warning) */
  if (header_warning[0] && strcmp(header_warning, first) != 0 &&
      (st = ps__warn_add(warn, "jpeg: %s", header_warning)) != PS_OK) {
    ps_error(st, "jpeg: out of memory reading %s", name);
    goto done;
  }
  size_t npx = (size_t)w * h;
  float *d = img->data;
  if (pf == TJPF_GRAY) {
    unit_floats(pix, npx, d);
  } else if (pf == TJPF_RGB) {
    for (size_t i = 0; i < npx; i++) d[i] = (float)ps__luma8(pix[3 * i], pix[3 * i + 1], pix[3 * i + 2]) / 255.0f;
  } else {
    for (size_t i = 0; i < npx; i++) {
      const uint8_t *p = pix + 4 * i;
      unsigned c = p[0], m = p[1], y = p[2], k = p[3];
      if (scan.adobe) c = 255 - c, m = 255 - m, y = 255 - y, k = 255 - k; /* Pillow's "CMYK;I" */
      int nk = 255 - (int)k;
      uint8_t r = clip8(nk - muldiv255(c, (unsigned)nk));
      uint8_t g = clip8(nk - muldiv255(m, (unsigned)nk));
      uint8_t b = clip8(nk - muldiv255(y, (unsigned)nk));
      d[i] = (float)ps__luma8(r, g, b) / 255.0f;
    }
  }
  img->meta.format = PS_FORMAT_JPEG;
  img->meta.rows = fh;
  img->meta.columns = fw;
  img->meta.components = comps;
  img->meta.bits_stored = 8;
  snprintf(img->meta.photometric, sizeof img->meta.photometric, "%s",
           cs == TJCS_GRAY ? "MONOCHROME2" : cs == TJCS_YCbCr ? "YBR_FULL" : cs == TJCS_RGB ? "RGB" : "CMYK");
  *out = img;
  img = NULL;
done:
  free(pix);
  ps_image_free(img);
  tjDestroy(tj);
  return st;
}
