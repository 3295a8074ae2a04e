/* libFuzzer harness: PNG and JPEG decoding (ps_image_read_memory), the same decoders
 * ps_image_read uses after sniffing a file, and ps_image_read_warnings against ps_image_read. */
#include "fuzz_common.h"
#include "ps_image_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ps_read_opts opts = ps_read_opts_default();
  opts.max_pixels = 4 * 1000 * 1000; /* keep each run small; the limit path itself is fuzzed too */
  ps_image *img = NULL;
  int st = ps_image_read_memory(data, size, "fuzz.img", &opts, &img);
  ps_fuzz_check_error(st, "ps_image_read_memory");
  if (st == PS_OK) {
    if (!img || img->width <= 0 || img->height <= 0 || !img->data) abort();
    if ((int64_t)img->width * img->height > opts.max_pixels) abort();
    /* touch every pixel: display-ready values must be finite and in [0, 1] */
    for (size_t i = 0; i < (size_t)img->width * img->height; i++)
      if (!(img->data[i] >= 0.0f && img->data[i] <= 1.0f)) abort();
  } else if (img) {
    abort(); /* *out must be NULL on failure */
  }
  ps_image_free(img);
  /* the same bytes as a file: ps_image_read and the warning-listing read agree */
  char path[64];
  int fd = ps_fuzz_memfile(data, size, path);
  if (fd < 0) return 0;
  ps_fuzz_check_readers(path, &opts);
  close(fd);
  return 0;
}
