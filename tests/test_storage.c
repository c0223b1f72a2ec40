/* The storage layer (core/storage.h) against a model kept element by element: random derefs of
 * random ranges in three places (the host and two fake devices whose memory is plain host memory
 * with counting copies), reading, writing and both. After each deref the range must hold the
 * logical values in that place, the copies made must be exactly the stale elements (device to
 * device twice, through the host; or once, straight, when the devices are peers: the run is
 * made both ways), and the valid ranges must be what the model says. Then
 * tensors: shared storages, views at offsets, growth to zeros, reshape keeping a view. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/rng.h"
#include "core/storage.h"
#include "core/tensor.h"

#define N 997
#define PLACES 3

/* ---------------------------------------------------------------- fake devices */

static unsigned long long uploads, downloads, zeros, peer_bytes;
static bool peer_mode; /* the fake devices reach each other */

static void *dev_alloc(const ct_mem *m, size_t bytes) {
  (void)m;
  return malloc(bytes ? bytes : 1);
}
static void dev_free(const ct_mem *m, void *p) {
  (void)m;
  free(p);
}
static ct_status dev_up(const ct_mem *m, void *dst, const void *src, size_t bytes, ct_error *err) {
  (void)m, (void)err;
  uploads += bytes;
  memcpy(dst, src, bytes);
  return CT_OK;
}
static ct_status dev_down(const ct_mem *m, void *dst, const void *src, size_t bytes, ct_error *err) {
  (void)m, (void)err;
  downloads += bytes;
  memcpy(dst, src, bytes);
  return CT_OK;
}
static ct_status dev_zero(const ct_mem *m, void *dst, size_t bytes, ct_error *err) {
  (void)m, (void)err;
  zeros += bytes;
  memset(dst, 0, bytes);
  return CT_OK;
}

static bool dev_reaches(const ct_mem *m, const ct_mem *from) { return peer_mode && from != m && from->id != 0; }
static ct_status dev_copy_from(const ct_mem *m, void *dst, const ct_mem *from, const void *src, size_t bytes,
                               ct_error *err) {
  (void)m, (void)from, (void)err;
  peer_bytes += bytes;
  memcpy(dst, src, bytes);
  return CT_OK;
}

#define FAKE(nm)                                                                                                \
  {.name = nm, .alloc = dev_alloc, .free = dev_free, .upload = dev_up, .download = dev_down, .zero = dev_zero, \
   .reaches = dev_reaches, .copy_from = dev_copy_from}
static ct_mem devs[2] = {FAKE("fake:0"), FAKE("fake:1")};

static const ct_mem *place(int i) { return i == 0 ? &ct_mem_host : &devs[i - 1]; }

/* ---------------------------------------------------------------- the model */

static float truth[N];          /* the storage's logical contents */
static bool valid[PLACES][N];   /* where each element is valid */
static bool held[N];            /* some place holds it (else it reads as zero) */

static void model_read(int p, size_t b, size_t e, unsigned long long *up, unsigned long long *down,
                       unsigned long long *peer) {
  *up = *down = *peer = 0;
  for (size_t i = b; i < e; i++) {
    if (valid[p][i]) continue;
    /* the source: the host first, then the devices in order; none: zero */
    int src = -1;
    for (int q = 0; q < PLACES && src < 0; q++)
      if (q != p && valid[q][i]) src = q;
    if (src >= 0) {
      if (p == 0)
        *down += 4;
      else if (src == 0)
        *up += 4;
      else if (peer_mode) /* device to device, straight */
        *peer += 4;
      else { /* device to device, through the host */
        *down += 4;
        *up += 4;
        valid[0][i] = true;
      }
    }
    valid[p][i] = true;
  }
}

static void model_write(int p, size_t b, size_t e) {
  for (size_t i = b; i < e; i++) {
    for (int q = 0; q < PLACES; q++) valid[q][i] = q == p;
    held[i] = true;
  }
}

static void test_random_derefs(bool peers) {
  peer_mode = peers;
  uploads = downloads = zeros = peer_bytes = 0;
  memset(truth, 0, sizeof truth), memset(valid, 0, sizeof valid), memset(held, 0, sizeof held);
  ct_error err;
  ct_storage *s = ct_storage_create();
  CHECK(s && ct_storage_reserve(s, N, &err) == CT_OK, "a storage of %d floats", N);
  ct_copy_stats stats;
  ct_copy_stats_reset(&stats);
  ct_rng r;
  ct_rng_seed(&r, 2024);
  int bad = 0;
  for (int step = 0; step < 4000 && bad < 5; step++) {
    int p = (int)ct_rng_below(&r, PLACES);
    size_t b = (size_t)ct_rng_below(&r, N), e = b + 1 + (size_t)ct_rng_below(&r, 64 + (step % 7 == 0 ? N : 0));
    if (e > N) e = N;
    ct_access mode = (ct_access)(1 + ct_rng_below(&r, 3));
    unsigned long long up0 = uploads, down0 = downloads, peer0 = peer_bytes, want_up = 0, want_down = 0, want_peer = 0;
    if (mode & CT_READ) model_read(p, b, e, &want_up, &want_down, &want_peer);
    float *v;
    if (ct_storage_deref(s, place(p), mode, b, e, &stats, &v, &err)) {
      CHECK(0, "deref: %s", err.msg);
      bad++;
      continue;
    }
    if (mode & CT_READ) {
      for (size_t i = b; i < e; i++)
        if (v[i] != (held[i] ? truth[i] : 0.0f)) {
          CHECK(0, "step %d: %s [%zu, %zu) element %zu reads %g, expected %g", step, place(p)->name, b, e, i, v[i],
                held[i] ? truth[i] : 0.0f);
          bad++;
          break;
        }
      if (uploads - up0 != want_up || downloads - down0 != want_down || peer_bytes - peer0 != want_peer) {
        CHECK(0, "step %d: %s read [%zu, %zu): copied up %llu down %llu peer %llu bytes, the model says %llu, %llu, %llu",
              step, place(p)->name, b, e, uploads - up0, downloads - down0, peer_bytes - peer0, want_up, want_down,
              want_peer);
        bad++;
      }
    } else {
      CHECK(uploads == up0 && downloads == down0 && peer_bytes == peer0, "step %d: a write copies nothing", step);
    }
    if (mode & CT_WRITE) {
      for (size_t i = b; i < e; i++) v[i] = truth[i] = ct_rng_gaussian(&r, 0, 1);
      model_write(p, b, e);
    }
    /* what is valid where, as the model says, over a window around the range */
    size_t lo = b > 8 ? b - 8 : 0, hi = e + 8 < N ? e + 8 : N;
    for (int q = 0; q < PLACES; q++)
      for (size_t i = lo; i < hi; i++)
        if (ct_storage_valid_in(s, place(q), i, i + 1) != valid[q][i]) {
          CHECK(0, "step %d: element %zu valid in %s: storage says %d, the model %d", step, i, place(q)->name,
                !valid[q][i], valid[q][i]);
          bad++;
          q = PLACES;
          break;
        }
  }
  CHECK(!bad, "4000 random derefs agree with the model (peers %d)", peer_mode);
  CHECK(ct_copy_stats_bytes(&stats) == uploads + downloads + peer_bytes,
        "the counters count every byte copied: %llu vs %llu", ct_copy_stats_bytes(&stats),
        uploads + downloads + peer_bytes);
  const unsigned long long d2d = stats.bytes[devs[0].id][devs[1].id] + stats.bytes[devs[1].id][devs[0].id];
  CHECK(d2d == peer_bytes && (peer_mode ? d2d > 0 : d2d == 0),
        "device-to-device copies counted as such: %llu bytes, %llu made straight (peers %d)", d2d, peer_bytes,
        peer_mode);
  /* growing drops every copy: everything reads as zero again */
  CHECK(ct_storage_reserve(s, 2 * N, &err) == CT_OK, "grow");
  float *v;
  CHECK(ct_storage_deref(s, place(1), CT_READ, 0, 2 * N, NULL, &v, &err) == CT_OK, "read after growing");
  int nonzero = 0;
  for (int i = 0; i < 2 * N; i++) nonzero += v[i] != 0;
  CHECK(nonzero == 0, "a grown storage reads as zeros (%d are not)", nonzero);
  CHECK(ct_storage_deref(s, place(0), CT_READ, 0, 2 * N, NULL, &v, &err) == CT_OK && downloads > 0,
        "the host then reads the device's zeros");
  ct_storage_release(s);
}

static void test_tensors(void) {
  ct_error err;
  ct_tensor *a = ct_tensor_create(), *b = ct_tensor_create();
  int s6[2] = {2, 3};
  CHECK(ct_tensor_reshape(a, 2, s6, &err) == CT_OK, "reshape");
  float *x;
  CHECK(ct_tensor_host(a, CT_DATA, CT_WRITE, &x, &err) == CT_OK, "host write");
  for (int i = 0; i < 6; i++) x[i] = (float)i + 1;
  /* b views a (Flatten): the same values, and writes through b are a's */
  int s1[1] = {6};
  CHECK(ct_tensor_reshape(b, 1, s1, &err) == CT_OK, "reshape the view");
  ct_tensor_share(b, a);
  float *y;
  CHECK(ct_tensor_deref(b, CT_DATA, place(1), CT_READWRITE, 2, 5, NULL, &y, &err) == CT_OK, "view on a device");
  CHECK(y[2] == 3 && y[4] == 5, "the view reads a's values on the device");
  y[3] = 40;
  CHECK(ct_tensor_host(a, CT_DATA, CT_READ, &x, &err) == CT_OK && x[3] == 40 && x[0] == 1,
        "a sees the view's write (element 3 = %g)", x[3]);
  /* a view at an offset (the net's parameters) */
  ct_tensor *c = ct_tensor_create();
  int s2[1] = {2};
  CHECK(ct_tensor_reshape(c, 1, s2, &err) == CT_OK, "reshape");
  ct_tensor_view(c, CT_DATA, a->st[CT_DATA], 4);
  CHECK(ct_tensor_host(c, CT_DATA, CT_READ, &x, &err) == CT_OK && x[0] == 5 && x[1] == 6, "an offset view: %g %g",
        x[0], x[1]);
  /* outgrowing a shared storage gives the tensor its own (zeros), and leaves the other alone */
  int s10[1] = {10};
  CHECK(ct_tensor_reshape(c, 1, s10, &err) == CT_OK, "grow the view");
  CHECK(c->st[CT_DATA] != a->st[CT_DATA] && c->off[CT_DATA] == 0, "a view that outgrows its storage gets its own");
  CHECK(ct_tensor_host(c, CT_DATA, CT_READ, &x, &err) == CT_OK && x[0] == 0 && x[9] == 0, "its own reads zeros");
  CHECK(ct_tensor_host(a, CT_DATA, CT_READ, &x, &err) == CT_OK && x[4] == 5, "a keeps its values");
  /* shrinking keeps the values; a deref beyond the count is refused */
  int s4[1] = {4};
  CHECK(ct_tensor_reshape(a, 1, s4, &err) == CT_OK, "shrink");
  CHECK(ct_tensor_host(a, CT_DATA, CT_READ, &x, &err) == CT_OK && x[3] == 40, "shrinking keeps the values");
  CHECK(ct_tensor_deref(a, CT_DATA, place(0), CT_READ, 0, 5, NULL, &x, &err) == CT_EINTERNAL,
        "a deref past the count is refused");
  ct_tensor_free(a);
  ct_tensor_free(b);
  ct_tensor_free(c);
}

int main(void) {
  for (int i = 0; i < 2; i++) CHECK(ct_mem_register(&devs[i]), "register %s", devs[i].name);
  CHECK(devs[0].id > 0 && devs[1].id > devs[0].id, "device places get their own ids");
  CHECK(!strcmp(ct_mem_name(devs[1].id), "fake:1"), "places are named");
  test_random_derefs(false);
  test_random_derefs(true);
  peer_mode = false;
  test_tensors();
  return ct_check_report();
}
