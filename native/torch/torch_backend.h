/* torch_backend.h — internal: the table of function pointers that libpneumoscope_torch.so (the
 * libtorch backend, torch.cpp) hands to the loader in libpneumoscope (loader.c). Not public API:
 * callers use ps_torch.h. Generated from torch_api.def, so both sides see the same entries.
 *
 *   void *h = dlopen("libpneumoscope_torch.so", RTLD_NOW | RTLD_LOCAL);
 *   ps_torch_backend_fn *get = (ps_torch_backend_fn *)dlsym(h, PS_TORCH_BACKEND_SYMBOL);
 *   const ps_torch_backend *b = get();
 *   if (b->size == sizeof(ps_torch_backend)) b->ps_op_relu(&y, x);
 */
#ifndef PS_TORCH_BACKEND_H
#define PS_TORCH_BACKEND_H

#include <stdint.h>

#include "ps_torch.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The module's file name (beside libpneumoscope.so) and its one exported symbol. */
#define PS_TORCH_BACKEND_FILE "libpneumoscope_torch.so"
#define PS_TORCH_BACKEND_SYMBOL "ps_torch_backend_v1"
/* Environment variable naming the module to load instead (that path only). */
#define PS_TORCH_BACKEND_ENV "PNEUMOSCOPE_TORCH_BACKEND"

typedef struct ps_torch_backend {
  uint32_t size;     /* sizeof(ps_torch_backend) in the backend: checked by the loader */
  uint32_t has_cuda; /* 1 when the backend was built with PS_HAVE_CUDA */
#define PS_TORCH_STATUS(name, params, args, on_fail) int(*name) params;
#define PS_TORCH_VALUE(type, name, params, args, fail) type(*name) params;
#define PS_TORCH_VOID(name, params, args) void(*name) params;
#define PS_TORCH_LOCAL(type, name, params, args) type(*name) params;
#include "torch_api.def"
} ps_torch_backend;

typedef const ps_torch_backend *ps_torch_backend_fn(void);

/* Defined (and exported, alone) by libpneumoscope_torch.so. */
PS_API const ps_torch_backend *ps_torch_backend_v1(void);

#ifdef __cplusplus
}
#endif
#endif
