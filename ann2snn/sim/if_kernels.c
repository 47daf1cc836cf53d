/* Fused integrate-and-fire chunk updates (ann2snn/sim/native.py compiles and calls them).
 *
 * One call runs `steps` IF updates of a whole layer: for each block of neurons the membrane potential
 * stays in registers / L1 across the steps, so each step reads the input current once and writes the
 * spikes once (the eager torch path makes three or four passes over the layer per step).
 *
 * Arithmetic is that of ann2snn/sim/neurons.py, in float32, in the same order (no fused multiply-add,
 * nothing reassociated: compiled with -ffp-contract=off and without -ffast-math), so the spikes and the
 * final state are bit-identical to the eager path:
 *   subtract: m = v + I; s = m >= 1; v = m - s
 *   zero:     m = v + I; s = m > theta; v = s ? 0 : m
 *   signed:   m = v + I; s = (m >= 1) - (m < 0 && count > 0); v = m - s; count += s
 *
 * All tensors share one dense memory layout (the caller checks strides): element i of step t of the
 * current is cur[t * cur_step + i] (cur_step 0: the same current every step), of the spikes
 * out[t * n + i]. Inputs and spikes are float32 or bfloat16 (raw 16-bit words; spikes 0, 1, -1 are exact);
 * the unsigned neurons also write uint8 spikes, for the int8 synapses.
 */
#include <stdint.h>
#include <string.h>

#ifndef BLOCK  /* neurons per block (benchmarks/if_kernels.py measures other sizes with -DBLOCK=...) */
#define BLOCK 1024
#endif

static inline float from_f32(float x) { return x; }
static inline float from_bf16(uint16_t x) {
    uint32_t u = (uint32_t)x << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static inline float to_f32(float s) { return s; }
/* spikes 0 and 1 as bytes: what int8 synapses read */
static inline uint8_t to_u8(float s) { return (uint8_t)s; }
/* bfloat16 of 0, 1 and -1 is the top half of their float32 bits */
static inline uint16_t to_bf16(float s) {
    uint32_t u;
    memcpy(&u, &s, sizeof u);
    return (uint16_t)(u >> 16);
}

#define FOR_BLOCKS(body)                                                                 \
    _Pragma("omp parallel for schedule(static)")                                        \
    for (int64_t b0 = 0; b0 < n; b0 += BLOCK) {                                         \
        const int64_t b1 = b0 + BLOCK < n ? b0 + BLOCK : n;                             \
        for (int64_t t = 0; t < steps; t++) {                                           \
            const int64_t c0 = t * cur_step, o0 = t * n;                                \
            for (int64_t i = b0; i < b1; i++) { body }                                  \
        }                                                                               \
    }

/* plain and reset-to-zero neurons: spikes 0 or 1, in any of the output types */
#define UNSIGNED_KERNELS(IN, IN_T, OUT, OUT_T)                                                       \
void ann2snn_if_subtract_##IN##_##OUT(const IN_T *restrict cur, int64_t cur_step, float *restrict v, \
                                      OUT_T *restrict out, int64_t n, int64_t steps) {               \
    FOR_BLOCKS(                                                                                      \
        const float m = v[i] + from_##IN(cur[c0 + i]);                                               \
        const float s = m >= 1.0f ? 1.0f : 0.0f;                                                     \
        v[i] = m - s;                                                                                \
        out[o0 + i] = to_##OUT(s);)                                                                  \
}                                                                                                    \
void ann2snn_if_zero_##IN##_##OUT(const IN_T *restrict cur, int64_t cur_step, float *restrict v,     \
                                  OUT_T *restrict out, int64_t n, int64_t steps,                     \
                                  const float *restrict threshold, int64_t per_neuron) {             \
    if (per_neuron) {                                                                                \
        FOR_BLOCKS(                                                                                  \
            const float m = v[i] + from_##IN(cur[c0 + i]);                                           \
            const int fire = m > threshold[i];                                                       \
            v[i] = fire ? 0.0f : m;                                                                  \
            out[o0 + i] = to_##OUT(fire ? 1.0f : 0.0f);)                                             \
    } else {                                                                                         \
        const float theta = threshold[0];                                                            \
        FOR_BLOCKS(                                                                                  \
            const float m = v[i] + from_##IN(cur[c0 + i]);                                           \
            const int fire = m > theta;                                                              \
            v[i] = fire ? 0.0f : m;                                                                  \
            out[o0 + i] = to_##OUT(fire ? 1.0f : 0.0f);)                                             \
    }                                                                                                \
}

/* signed neurons: spikes -1, 0 or 1 (float types only: a -1 has no byte) */
#define SIGNED_KERNEL(IN, IN_T, OUT, OUT_T)                                                          \
void ann2snn_if_signed_##IN##_##OUT(const IN_T *restrict cur, int64_t cur_step, float *restrict v,   \
                                    float *restrict count, OUT_T *restrict out, int64_t n,           \
                                    int64_t steps) {                                                 \
    FOR_BLOCKS(                                                                                      \
        const float m = v[i] + from_##IN(cur[c0 + i]);                                               \
        const float s = (m >= 1.0f ? 1.0f : 0.0f) - (m < 0.0f && count[i] > 0.0f ? 1.0f : 0.0f);    \
        v[i] = m - s;                                                                                \
        count[i] = count[i] + s;                                                                     \
        out[o0 + i] = to_##OUT(s);)                                                                  \
}

#define FLOAT_KERNELS(IN, IN_T, OUT, OUT_T) UNSIGNED_KERNELS(IN, IN_T, OUT, OUT_T) SIGNED_KERNEL(IN, IN_T, OUT, OUT_T)

FLOAT_KERNELS(f32, float, f32, float)
FLOAT_KERNELS(f32, float, bf16, uint16_t)
FLOAT_KERNELS(bf16, uint16_t, f32, float)
FLOAT_KERNELS(bf16, uint16_t, bf16, uint16_t)
UNSIGNED_KERNELS(f32, float, u8, uint8_t)
UNSIGNED_KERNELS(bf16, uint16_t, u8, uint8_t)
