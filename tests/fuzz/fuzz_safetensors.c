/* libFuzzer harness: the safetensors parser behind ps_model_load (native/model/safetensors.c,
 * ps_st_parse: header length, JSON header, dtypes, shapes, offsets). libtorch is not linked here:
 * the two dtype helpers the parser uses are copied from native/torch/torch.cpp below. */
#include "fuzz_common.h"
#include "safetensors.h"

size_t ps_dtype_size(ps_dtype d) {
  switch (d) {
    case PS_DTYPE_F32: return 4;
    case PS_DTYPE_F16: return 2;
    case PS_DTYPE_BF16: return 2;
    case PS_DTYPE_I64: return 8;
    case PS_DTYPE_U8: return 1;
    case PS_DTYPE_BOOL: return 1;
    default: return 0;
  }
}
const char *ps_dtype_name(ps_dtype d) {
  switch (d) {
    case PS_DTYPE_F32: return "F32";
    case PS_DTYPE_F16: return "F16";
    case PS_DTYPE_BF16: return "BF16";
    case PS_DTYPE_I64: return "I64";
    case PS_DTYPE_U8: return "U8";
    case PS_DTYPE_BOOL: return "BOOL";
    default: return "OTHER";
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ps_st_file *f = NULL;
  int st = ps_st_parse("fuzz.safetensors", data, size, &f);
  ps_fuzz_check_error(st, "ps_st_parse");
  if (st == PS_OK) {
    if (!f) abort();
    for (int i = 0; i < f->n; i++) {
      const ps_st_tensor *t = &f->tensors[i];
      if (t->begin > t->end || !t->name) abort();
      if (ps_st_find(f, t->name) == NULL) abort();
      /* the tensor's bytes must lie inside the file: read them all */
      volatile uint8_t sink = 0;
      for (uint64_t b = 0; b < t->end - t->begin; b++) sink ^= t->data[b];
      (void)sink;
    }
    (void)ps_st_meta(f, "classes");
  } else if (f) {
    abort();
  }
  ps_st_free(f);
  return 0;
}
