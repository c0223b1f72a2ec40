/* cuBLAS through dlopen (cuda/cublas_dl.h). */
#include "drivers/cuda/cublas_dl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

static ct_cublas_api api;
static const ct_cublas_api *loaded;
static char failure[300];
static pthread_once_t once = PTHREAD_ONCE_INIT;

#define CT_STR2(x) #x
#define CT_STR(x) CT_STR2(x)

static void load(void) {
  /* the toolkit's major version first (the ABI this was compiled against), then any */
  static const char *const names[] = {"libcublas.so." CT_STR(CUBLAS_VER_MAJOR), "libcublas.so"};
  void *h = NULL;
  for (size_t i = 0; i < sizeof names / sizeof *names && !h; i++) h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    snprintf(failure, sizeof failure, "cannot load cuBLAS (%s): %s", names[0], dlerror());
    return;
  }
#define SYM(field, name)                                                                   \
  if (!(*(void **)&api.field = dlsym(h, name))) {                                          \
    snprintf(failure, sizeof failure, "cuBLAS (%s) lacks %s", names[0], name);             \
    return;                                                                                \
  }
  SYM(create, "cublasCreate_v2")
  SYM(destroy, "cublasDestroy_v2")
  SYM(set_stream, "cublasSetStream_v2")
  SYM(set_pointer_mode, "cublasSetPointerMode_v2")
  SYM(sgemm, "cublasSgemm_v2")
  SYM(sgemv, "cublasSgemv_v2")
  SYM(sdot, "cublasSdot_v2")
  SYM(sasum, "cublasSasum_v2")
  SYM(status_string, "cublasGetStatusString")
#undef SYM
  loaded = &api; /* the handle stays open for the process */
}

const ct_cublas_api *ct_cublas(char *why, size_t n) {
  pthread_once(&once, load);
  if (!loaded) snprintf(why, n, "%s", failure);
  return loaded;
}
