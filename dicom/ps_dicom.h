/* ps_dicom.h — read DICOM chest films (DCMTK inside, C outside) into a display-ready ps_image.
 *
 *   ps_read_opts opts = ps_read_opts_default();      // limits for untrusted files
 *   ps_image *img = NULL;
 *   int st = ps_dicom_read("film.dcm", &opts, &img);
 *   if (st != PS_OK) fprintf(stderr, "%s: %s\n", ps_strerror(st), ps_last_error());
 *   else printf("%dx%d %s window %g/%g\n", img->width, img->height, img->meta.photometric,
 *               img->meta.window_center, img->meta.window_width);
 *   ps_image_free(img);
 *
 * What ps_dicom_read does to the first frame, in this order (DICOM PS3.3 C.11):
 *   stored values  BitsStored/HighBit masking, PixelRepresentation sign extension;
 *   modality LUT   Modality LUT Sequence if present, else RescaleSlope/Intercept (default 1/0);
 *   VOI            VOI LUT Sequence if present, else the first WindowCenter/WindowWidth with
 *                  VOILUTFunction LINEAR (C.11.2.1.2.1), LINEAR_EXACT or SIGMOID; with neither:
 *                  8-bit (or less) films without a modality LUT/rescale map their full stored
 *                  range (v / 255, as their PNG twin would), deeper films get a robust window
 *                  from the 0.5 and 99.5 percentiles of the frame (meta.window_* records it);
 *   MONOCHROME1    inverted after the VOI so anatomy is bright as in MONOCHROME2.
 * RGB, YBR_FULL, YBR_FULL_422 (and YBR_ICT/RCT in JPEG 2000) become luminance
 * 0.299 R + 0.587 G + 0.114 B over the full stored range (no window). PALETTE COLOR is refused.
 * With opts->raw the image keeps the modality values (is_raw = 1, no VOI, no inversion) and
 * meta.window_center/width hold the window that would have been applied.
 *
 * Transfer syntaxes: Implicit/Explicit VR Little Endian, Explicit VR Big Endian, Deflated,
 * JPEG Baseline/Extended/Lossless (incl. SV1), JPEG-LS lossless/near-lossless, RLE, and
 * JPEG 2000 (lossless and lossy, YBR_RCT/ICT colour) when built with OpenJPEG
 * (ps_dicom_have_jpeg2000()); files with no preamble and no meta header (ACR-NEMA style) are read
 * too. Other transfer syntaxes (HTJ2K, MPEG/HEVC video, JPEG XL, unknown UIDs) fail with
 * PS_EUNSUPPORTED naming the syntax. Multi-frame files give frame 0;
 * meta.frames holds NumberOfFrames.
 *
 * Untrusted input: the file size (and, for Deflated files, the inflated data set: DCMTK inflates
 * in memory) is checked against opts->max_bytes before DCMTK parses anything, and
 * Rows x Columns x NumberOfFrames against opts->max_pixels before any pixel is decoded.
 * Failures return a status (PS_ENOTFOUND, PS_EIO, PS_EFORMAT, PS_EUNSUPPORTED, PS_ELIMIT,
 * PS_ENOMEM) and ps_last_error() names the file and the problem. Thread-safe; DCMTK's own
 * logger is silenced, nothing is printed.
 *
 * Damaged pixel data is refused (PS_EFORMAT) even where a decoder could go on with guessed or
 * zero pixels: native pixel data shorter than NumberOfFrames x Rows x Columns x SamplesPerPixel
 * x BitsAllocated (as pydicom refuses it), and a JPEG frame on which libjpeg warns ("Corrupt
 * JPEG data: bad Huffman code"; DCMTK's decoder would only log it). ps_dicom_read_warnings lists
 * those instead.
 */
#ifndef PS_DICOM_H
#define PS_DICOM_H

#include "ps_image.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Decode the first frame of the DICOM file at path into a new (H, W) image (see above).
 * opts may be NULL (defaults). *out is NULL on failure; free with ps_image_free. */
PS_API int ps_dicom_read(const char *path, const ps_read_opts *opts, ps_image **out);

/* Like ps_dicom_read, but damaged pixel data (see above) is listed instead of refusing the film:
 * *warnings gets nwarnings texts ("dicom: pixel data is 1000 bytes, shorter than ..."), NULL and
 * 0 when there are none; free them with ps_image_warnings_free (ps_image_io.h). Missing samples
 * of frame 0 read as 0. For reports only, never for a diagnosis. */
PS_API int ps_dicom_read_warnings(const char *path, const ps_read_opts *opts, ps_image **out, char ***warnings,
                                  int *nwarnings);

/* Read only the header into *meta (no pixel is decoded; window_* are those in the file, width
 * 0 when none). Same checks and statuses as ps_dicom_read except for pixel-data problems. */
PS_API int ps_dicom_read_meta(const char *path, const ps_read_opts *opts, ps_film_meta *meta);

/* 1 when the file looks like DICOM: "DICM" at offset 128, or (no preamble) a plausible first
 * data element of group 0002 or 0008 in implicit or explicit VR. 0 otherwise or unreadable. */
PS_API int ps_dicom_probe(const char *path);

/* 1 when JPEG 2000 transfer syntaxes can be decoded (built with OpenJPEG), else 0. */
PS_API int ps_dicom_have_jpeg2000(void);

#ifdef __cplusplus
}
#endif
#endif
