/* The libhdf5 lock (h5lock.h). */
#include "core/h5lock.h"

#include <hdf5.h>
#include <pthread.h>

static pthread_once_t h5_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t h5_mu;

static void h5_init(void) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
  pthread_mutex_init(&h5_mu, &a);
  pthread_mutexattr_destroy(&a);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* the callers report libhdf5's errors themselves */
}

void ct_h5_lock(void) {
  pthread_once(&h5_once, h5_init);
  pthread_mutex_lock(&h5_mu);
}

void ct_h5_unlock(void) { pthread_mutex_unlock(&h5_mu); }
