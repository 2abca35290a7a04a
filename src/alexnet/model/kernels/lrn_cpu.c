/* alexnet::lrn on the CPU: y = x S^-beta, S = k + alpha window(x^2), and its gradient, fp32 or bf16 (math in fp32).
   Tensors are (n, c, p) with p = h * w, NCHW or channels_last; nothing is saved between forward and backward. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#if defined(LRN_MVEC) /* glibc's vector expf/logf (libmvec), so that a general beta's power vectorizes */
extern float expf(float) __attribute__((simd("notinbranch")));
extern float logf(float) __attribute__((simd("notinbranch")));
#endif

typedef int64_t i64;

static inline float bf16_to_float(uint16_t h) {
  const uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static inline uint16_t float_to_bf16(float f) { /* round to nearest even, as torch does; NaN stays NaN */
  uint32_t u;
  memcpy(&u, &f, 4);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  return (u & 0x7fffffffu) > 0x7f800000u ? (uint16_t)((u >> 16) | 0x40u) : (uint16_t)rounded;
}

static void load(const void *src, int bf16, i64 offset, float *restrict dst, i64 len) {
  if (bf16) {
    const uint16_t *s = (const uint16_t *)src + offset;
    for (i64 i = 0; i < len; i++) dst[i] = bf16_to_float(s[i]);
  } else {
    memcpy(dst, (const float *)src + offset, len * sizeof(float));
  }
}

static void store(void *dst, int bf16, i64 offset, const float *restrict src, i64 len) {
  if (bf16) {
    uint16_t *d = (uint16_t *)dst + offset;
    for (i64 i = 0; i < len; i++) d[i] = float_to_bf16(src[i]);
  } else {
    memcpy((float *)dst + offset, src, len * sizeof(float));
  }
}

#if defined(__AVX512F__)
#define LANES 16
typedef __m512 vec;
#define vload _mm512_loadu_ps
#define vstore _mm512_storeu_ps
#define vmul _mm512_mul_ps
#define vset _mm512_set1_ps
#define vrsqrt _mm512_rsqrt14_ps                  /* to 14 bits */
#define vfnmadd _mm512_fnmadd_ps                  /* c - a b */
#define vzero_where(s, v, x) _mm512_mask_blend_ps(_mm512_cmp_ps_mask(s, vset(x), _CMP_EQ_OQ), v, vset(0.0f))
#elif defined(__AVX2__) && defined(__FMA__)
#define LANES 8
typedef __m256 vec;
#define vload _mm256_loadu_ps
#define vstore _mm256_storeu_ps
#define vmul _mm256_mul_ps
#define vset _mm256_set1_ps
#define vrsqrt _mm256_rsqrt_ps                    /* to 12 bits */
#define vfnmadd _mm256_fnmadd_ps
#define vzero_where(s, v, x) _mm256_blendv_ps(v, vset(0.0f), _mm256_cmp_ps(s, vset(x), _CMP_EQ_OQ))
#endif

#if defined(LANES)
static inline vec rsqrt_nr(vec x) { /* x^-1/2 to a few ulp: the estimate and one Newton step */
  const vec y = vrsqrt(x);
  return vmul(y, vfnmadd(vmul(vmul(x, vset(0.5f)), y), y, vset(1.5f)));
}
#endif

/* From S in s: the forward (g NULL) x *= S^-beta; the backward g *= S^-beta and t = g x / S (g x S^(-beta-1)). */
static void powers(const float *restrict s, float *restrict x, float *restrict g, float *restrict t, i64 len,
                   float beta) {
  i64 i = 0;
  if (beta == 0.75f) { /* the paper's beta: S^-3/4 = a^2 a^-1/2 with a = S^-1/2, and 1/S = a^2: no exp, log, div */
#if defined(LANES)
    for (; i + LANES <= len; i += LANES) {
      const vec si = vload(s + i), a = rsqrt_nr(si), xi = vload(x + i);
      const vec a2 = vzero_where(si, vmul(a, a), INFINITY), p = vzero_where(si, vmul(a2, rsqrt_nr(a)), INFINITY);
      if (!g) {
        vstore(x + i, vmul(xi, p));
      } else {
        const vec gp = vmul(vload(g + i), p);
        vstore(g + i, gp);
        vstore(t + i, vmul(vmul(gp, xi), a2));
      }
    }
#endif
    for (; i < len; i++) {
      const float p = 1.0f / sqrtf(s[i] * sqrtf(s[i]));
      if (!g) {
        x[i] *= p;
      } else {
        g[i] *= p;
        t[i] = g[i] * x[i] / s[i];
      }
    }
  } else if (!g) {
    for (; i < len; i++) x[i] *= expf(-beta * logf(s[i]));
  } else {
    for (; i < len; i++) {
      g[i] *= expf(-beta * logf(s[i]));
      t[i] = g[i] * x[i] / s[i];
    }
  }
}

/* out[i] = k + alpha * sum_{|d| <= r} pad[i + d ld] for i in [lo, hi); with g, out[i] = g[i] - alpha x[i] sum.
   Inlined for constant r (the paper's r = 2) so that the sum unrolls into one pass. */
static inline __attribute__((always_inline)) void window_(float *restrict out, const float *restrict pad, i64 lo,
                                                          i64 hi, i64 ld, i64 r, float alpha, float k,
                                                          const float *restrict x, const float *restrict g) {
  for (i64 i = lo; i < hi; i++) {
    float sum = 0.0f;
    for (i64 d = -r; d <= r; d++) sum += pad[i + d * ld];
    out[i] = g ? g[i] - alpha * x[i] * sum : k + alpha * sum;
  }
}

static void window(float *restrict out, const float *restrict pad, i64 lo, i64 hi, i64 ld, i64 r, float alpha,
                   float k, const float *restrict x, const float *restrict g) {
  if (r == 2) window_(out, pad, lo, hi, ld, 2, alpha, k, x, g);
  else if (r == 1) window_(out, pad, lo, hi, ld, 1, alpha, k, x, g);
  else window_(out, pad, lo, hi, ld, r, alpha, k, x, g);
}

/* A tile is fp32 buffers of whole windows with zero padding that is never written, so sums over the flat buffer
   stop at group ends. NCHW: r + cg + r rows of BLOCK pixels of one group, a window steps BLOCK. channels_last:
   PIXELS pixels' groups of cg channels, r zeros between them, a window steps 1. */
#define BLOCK 128
#define FLAT 1024 /* channels_last: values per tile, at least one pixel's */

typedef struct {
  int channels_last;
  i64 c, cg, p, r, pixels, count; /* pixels per channels_last tile; tiles in the tensor */
  i64 ld, lo, hi;                 /* window step; a full tile's values are [lo, hi) */
  float *x, *g, *sq, *t, *out;
} Tiles;

static int tiles_init(Tiles *t, int channels_last, i64 n, i64 c, i64 p, i64 groups, i64 r, int backward) {
  i64 size;
  t->channels_last = channels_last, t->c = c, t->cg = c / groups, t->p = p, t->r = r;
  t->pixels = FLAT / c > 0 ? FLAT / c : 1;
  if (channels_last) {
    t->count = (n * p + t->pixels - 1) / t->pixels;
    t->ld = 1, t->lo = r, t->hi = r + t->pixels * groups * (t->cg + r), size = t->hi + r;
  } else {
    t->count = n * groups * ((p + BLOCK - 1) / BLOCK);
    t->ld = BLOCK, t->lo = r * BLOCK, t->hi = (r + t->cg) * BLOCK, size = t->hi + r * BLOCK;
  }
  t->x = calloc(size, sizeof(float)), t->sq = calloc(size, sizeof(float)), t->out = calloc(size, sizeof(float));
  t->g = backward ? calloc(size, sizeof(float)) : NULL, t->t = backward ? calloc(size, sizeof(float)) : NULL;
  return t->x && t->sq && t->out && (!backward || (t->g && t->t));
}

static void tiles_free(Tiles *t) { free(t->x), free(t->g), free(t->sq), free(t->t), free(t->out); }

/* Tile i: where it starts in the tensor, how many pixels it has and the end of its values. */
static i64 tile_at(const Tiles *t, i64 i, i64 n, i64 *len, i64 *hi) {
  if (t->channels_last) {
    const i64 first = i * t->pixels;
    *len = n * t->p - first < t->pixels ? n * t->p - first : t->pixels;
    *hi = t->lo + *len * (t->c / t->cg) * (t->cg + t->r);
    return first * t->c;
  }
  const i64 blocks = (t->p + BLOCK - 1) / BLOCK, p0 = (i % blocks) * BLOCK;
  *len = t->p - p0 < BLOCK ? t->p - p0 : BLOCK, *hi = t->hi;
  return (i / blocks) * t->cg * t->p + p0; /* (image, group) is i / blocks */
}

/* Copies a tile's values between buf and a tensor: in from src, or out to dst. */
static void tile_copy(const Tiles *t, float *buf, const void *src, void *dst, int bf16, i64 base, i64 len) {
  const int channels_last = t->channels_last;
  const i64 segments = channels_last ? len * (t->c / t->cg) : t->cg, run = channels_last ? t->cg : len;
  for (i64 s = 0; s < segments; s++) {
    float *b = buf + t->lo + s * (channels_last ? t->cg + t->r : BLOCK);
    const i64 at = base + s * (channels_last ? t->cg : t->p);
    if (dst) store(dst, bf16, at, b, run);
    else load(src, bf16, at, b, run);
  }
}

int lrn_forward(const void *x, void *y, int bf16, int channels_last, i64 n, i64 c, i64 p, int groups, int size,
                float alpha, float beta, float k, int threads) {
  int failed = 0;
#pragma omp parallel num_threads(threads)
  {
    Tiles t;
    const int ok = tiles_init(&t, channels_last, n, c, p, groups, size / 2, 0);
    if (!ok) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(static)
    for (i64 i = 0; i < t.count; i++) {
      i64 len, hi;
      const i64 base = tile_at(&t, i, n, &len, &hi);
      if (!ok) continue;
      tile_copy(&t, t.x, x, NULL, bf16, base, len);
      for (i64 j = t.lo; j < hi; j++) t.sq[j] = t.x[j] * t.x[j];
      window(t.out, t.sq, t.lo, hi, t.ld, t.r, alpha, k, NULL, NULL); /* S */
      powers(t.out + t.lo, t.x + t.lo, NULL, NULL, hi - t.lo, beta);  /* y */
      tile_copy(&t, t.x, NULL, y, bf16, base, len);
    }
    tiles_free(&t);
  }
  return failed;
}

/* dx = g S^-beta - 2 alpha beta x window(g x S^(-beta-1)), S recomputed from x. */
int lrn_backward(const void *grad, const void *x, void *dx, int bf16, int channels_last, i64 n, i64 c, i64 p,
                 int groups, int size, float alpha, float beta, float k, int threads) {
  int failed = 0;
#pragma omp parallel num_threads(threads)
  {
    Tiles t;
    const int ok = tiles_init(&t, channels_last, n, c, p, groups, size / 2, 1);
    if (!ok) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(static)
    for (i64 i = 0; i < t.count; i++) {
      i64 len, hi;
      const i64 base = tile_at(&t, i, n, &len, &hi);
      if (!ok) continue;
      tile_copy(&t, t.x, x, NULL, bf16, base, len);
      tile_copy(&t, t.g, grad, NULL, bf16, base, len);
      for (i64 j = t.lo; j < hi; j++) t.sq[j] = t.x[j] * t.x[j];
      window(t.out, t.sq, t.lo, hi, t.ld, t.r, alpha, k, NULL, NULL);           /* S */
      powers(t.out + t.lo, t.x + t.lo, t.g + t.lo, t.t + t.lo, hi - t.lo, beta); /* 0 in the padding */
      window(t.out, t.t, t.lo, hi, t.ld, t.r, 2.0f * alpha * beta, 0.0f, t.x, t.g);
      tile_copy(&t, t.out, NULL, dx, bf16, base, len);
    }
    tiles_free(&t);
  }
  return failed;
}
