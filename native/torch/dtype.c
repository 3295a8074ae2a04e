/* dtype.c — element sizes and safetensors names of ps_dtype (no libtorch: the safetensors reader
 * and its fuzz harness use them too). */
#include "ps_torch.h"

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
