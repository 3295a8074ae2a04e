/* ps_image_io.h — read chest films (PNG, JPEG, DICOM) into a ps_image; write 8-bit PNGs.
 *
 *   ps_read_opts opts = ps_read_opts_default();   // or a zeroed struct, or NULL
 *   ps_image *img = NULL;
 *   int st = ps_image_read("film.jpeg", &opts, &img);
 *   if (st != PS_OK) { fprintf(stderr, "%s\n", ps_last_error()); return st; }
 *   // img->data: (H, W) floats in [0, 1]; img->meta.format == PS_FORMAT_JPEG ...
 *   st = ps_image_write_png(img, "film.png");       // 8-bit gray, round(v * 255)
 *   ps_image_free(img);
 *
 * ps_image_read looks at the content, not the extension: the PNG signature, a JPEG SOI marker,
 * else DICOM through ps_dicom_read (PS_EUNSUPPORTED "built without DICOM" when DCMTK is off),
 * else PS_EFORMAT "not a PNG, JPEG or DICOM film".
 *
 * Gray levels (what Pillow's Image.open(path).convert("L") gives, divided by 255):
 *  - 8-bit gray: v / 255; 1/2/4-bit gray: v / (2^bits - 1) (Pillow scales these to 0..255 too);
 *  - 16-bit gray PNG: v / 65535 (Pillow keeps the 16-bit value in mode "I");
 *  - RGB(A), palette, CMYK JPEG: luminance with Pillow's ITU-R 601 fixed-point rounding,
 *    L = (19595 R + 38470 G + 7471 B + 32768) >> 16 on 8-bit samples, then / 255;
 *    16-bit RGB PNG: the same weights on v / 65535 without rounding to 8 bits;
 *  - alpha (gray+alpha, RGBA, tRNS) is ignored, as convert("L") does.
 * JPEGs decode through TurboJPEG with the accurate integer IDCT and fancy upsampling, which is
 * what Pillow's libjpeg decoder uses: 8-bit results equal Pillow's exactly.
 *
 * Limits (ps_read_opts): max_bytes is checked on the file size before anything is read,
 * max_pixels on the header before any pixel buffer is allocated (decompression bombs).
 *
 * Damaged data refuses the film (PS_EFORMAT, the decoder's own text in ps_last_error()) even
 * where the decoder could fill the gap with guessed pixels, so no film is diagnosed from them:
 *  - JPEG: any libjpeg-turbo warning ("Corrupt JPEG data: 41 extraneous bytes before marker
 *    0xc7", "premature end of data segment", "bad Huffman code", ...). Pillow ignores these and
 *    refuses only the damage that turns fatal ("broken data stream");
 *  - PNG: a CRC error in any chunk, and libpng's warnings and benign errors on the image data
 *    ("IDAT: Too much image data"). Complaints about ancillary metadata the decoder does not use
 *    (an ICC profile libpng dislikes, a duplicate gAMA) only go to the debug log;
 *  - DICOM (ps_dicom.h): pixel data shorter than its header declares, libjpeg warnings on a
 *    JPEG-compressed frame.
 * ps_image_read_warnings reads the same film but lists those warnings instead of refusing it
 * (for reports such as `pneumoscope info`): ps_image_read fails on a film exactly when
 * ps_image_read_warnings fails or lists at least one warning.
 */
#ifndef PS_IMAGE_IO_H
#define PS_IMAGE_IO_H

#include "ps_common.h"
#include "ps_image.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Read a film (PNG, JPEG or DICOM, by content). *out is owned by the caller (ps_image_free).
 * Errors name the file: PS_EIO (missing, unreadable, a directory), PS_EFORMAT (malformed,
 * truncated, unknown format), PS_ELIMIT (max_bytes/max_pixels), PS_EUNSUPPORTED. */
PS_API int ps_image_read(const char *path, const ps_read_opts *opts, ps_image **out);

/* Like ps_image_read, but damaged data the decoder could get past (see above) is listed instead
 * of refusing the film: *warnings gets nwarnings decoder texts ("jpeg: Corrupt JPEG data: bad
 * Huffman code", "png: tEXt: CRC error", "dicom: pixel data is 1000 bytes, shorter than ..."),
 * NULL and 0 for a clean film; free them with ps_image_warnings_free. *out then holds what the
 * decoder made of the damaged data (libjpeg's guesses, missing DICOM samples as 0): for showing,
 * never for a diagnosis. Fails like ps_image_read on everything else (*warnings NULL then). */
PS_API int ps_image_read_warnings(const char *path, const ps_read_opts *opts, ps_image **out, char ***warnings,
                                  int *nwarnings);
/* Free a list from ps_image_read_warnings or ps_dicom_read_warnings; NULL is fine. */
PS_API void ps_image_warnings_free(char **warnings, int nwarnings);

/* Same as ps_image_read, from memory (PNG or JPEG only; DICOM needs a path). name is used in
 * messages. */
PS_API int ps_image_read_memory(const void *data, size_t size, const char *name,
                                const ps_read_opts *opts, ps_image **out);

/* Format of a file by its content (PS_FORMAT_UNKNOWN when unreadable or not a film). */
PS_API ps_format ps_image_sniff(const char *path);

/* Write img as an 8-bit grayscale PNG, pixel = round(clamp(v, 0, 1) * 255).
 * The write is atomic (temporary file in the same folder, then rename). An existing file is
 * replaced only when it is a PNG this library wrote (it carries a "Software: PneumoScope"
 * text chunk): a user's film or any other file is never overwritten (PS_EIO). */
PS_API int ps_image_write_png(const ps_image *img, const char *path);

/* Write an 8-bit RGB PNG from interleaved rgb (H, W, 3); same atomic/overwrite rules. */
PS_API int ps_image_write_png_rgb(const uint8_t *rgb /* (H, W, 3) */, int w, int h, const char *path);

/* 1 when path names the same file as other (same device and inode), else 0. */
PS_API int ps_image_same_file(const char *path, const char *other);

#ifdef __cplusplus
}
#endif
#endif
