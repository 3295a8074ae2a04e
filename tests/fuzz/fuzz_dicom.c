/* libFuzzer harness: the DICOM reader (ps_dicom_read, ps_dicom_read_meta, ps_dicom_probe) and the
 * ps_image_read dispatch in front of it, over a memfd path; ps_image_read_warnings agrees with it. */
#include "fuzz_common.h"
#include "ps_dicom.h"
#include "ps_image_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char path[64];
  int fd = ps_fuzz_memfile(data, size, path);
  if (fd < 0) return 0;
  ps_read_opts opts = ps_read_opts_default();
  opts.max_pixels = 4 * 1000 * 1000;
  opts.raw = size > 0 && (data[size - 1] & 1); /* both output paths */

  (void)ps_dicom_probe(path);
  ps_film_meta meta;
  int st = ps_dicom_read_meta(path, &opts, &meta);
  ps_fuzz_check_error(st, "ps_dicom_read_meta");

  ps_image *img = NULL;
  st = ps_dicom_read(path, &opts, &img);
  ps_fuzz_check_error(st, "ps_dicom_read");
  if (st == PS_OK) {
    if (!img || img->width <= 0 || img->height <= 0 || !img->data) abort();
    volatile float sink = 0;
    for (size_t i = 0; i < (size_t)img->width * img->height; i++) sink += img->data[i];
    (void)sink;
  } else if (img) {
    abort();
  }
  ps_image_free(img);

  ps_fuzz_check_readers(path, &opts);
  close(fd);
  return 0;
}
