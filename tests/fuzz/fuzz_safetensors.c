/* libFuzzer harness: the safetensors parser behind ps_model_load (native/model/safetensors.c,
 * ps_st_open + ps_st_read_tensor over a memfd path: header length, JSON header, dtypes, shapes,
 * offsets). libtorch is not linked here: the parser's two dtype helpers come from
 * native/torch/dtype.c, its JSON from jansson. */
#include "fuzz_common.h"
#include "safetensors.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char path[64];
  int fd = ps_fuzz_memfile(data, size, path);
  if (fd < 0) return 0;
  ps_st_file *f = NULL;
  int st = ps_st_open(path, &f);
  ps_fuzz_check_error(st, "ps_st_open");
  if (st == PS_OK) {
    if (!f) abort();
    for (int i = 0; i < f->n; i++) {
      const ps_st_tensor *t = &f->tensors[i];
      if (t->begin > t->end || !t->name) abort();
      if (f->data_start + t->end > f->size) abort(); /* validated to lie inside the file */
      if (ps_st_find(f, t->name) == NULL) abort();
      uint64_t n = t->end - t->begin;
      if (n <= (1u << 20)) { /* read it back: every byte must be there */
        void *buf = malloc(n ? n : 1);
        if (!buf) abort();
        int rs = ps_st_read_tensor(f, t, buf);
        ps_fuzz_check_error(rs, "ps_st_read_tensor");
        if (rs != PS_OK) abort();
        free(buf);
      }
    }
    (void)ps_st_meta(f, "classes");
  } else if (f) {
    abort();
  }
  ps_st_free(f);
  close(fd);
  return 0;
}
