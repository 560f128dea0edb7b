// CPU feature detection. Baseline code: no ISA flags may reach this file.
#include "cnnfast/runtime.h"

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#define CNNFAST_X86 1
#include <cpuid.h>
#endif

namespace cnnfast {

namespace {

#ifdef CNNFAST_X86
struct X86Features {
    bool avx2_fma = false;
    bool avx512 = false;  // F + BW + VL + DQ, with the OS saving ZMM state
    bool full_width = false;  // AVX-512 with 512-bit FMAs at full rate (cpu_full_width_avx512)
};

unsigned long long xgetbv0() {
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return (static_cast<unsigned long long>(edx) << 32) | eax;
}

X86Features detect() {
    X86Features f;
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
    const bool osxsave = ecx & (1u << 27);
    const bool avx = ecx & (1u << 28);
    const bool fma = ecx & (1u << 12);
    if (!osxsave || !avx) return f;
    const unsigned long long xcr0 = xgetbv0();
    const bool ymm_state = (xcr0 & 0x6) == 0x6;
    const bool zmm_state = (xcr0 & 0xe6) == 0xe6;
    if (__get_cpuid_max(0, nullptr) < 7) return f;
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    const bool avx2 = ebx & (1u << 5);
    const bool avx512f = ebx & (1u << 16);
    const bool avx512dq = ebx & (1u << 17);
    const bool avx512bw = ebx & (1u << 30);
    const bool avx512vl = ebx & (1u << 31);
    f.avx2_fma = ymm_state && avx2 && fma;
    f.avx512 = f.avx2_fma && zmm_state && avx512f && avx512dq && avx512bw && avx512vl;
    // Vendor and family: AMD's first AVX-512 cores (family 0x19, Zen 4) split 512-bit operations in two;
    // family 0x1A (Zen 5) and later do not, nor do Intel's AVX-512 cores (two FMA ports on server parts).
    // NOTE: a heuristic for a cost model, not a guarantee: Zen 5's mobile parts (256-bit datapaths) and Intel
    // cores with one AVX-512 FMA port count as full-width; only a speed trade-off depends on it.
    unsigned int max_leaf, vb, vc, vd;
    __cpuid(0, max_leaf, vb, vc, vd);
    const bool amd = vb == 0x68747541u && vd == 0x69746e65u && vc == 0x444d4163u;    // "AuthenticAMD"
    const bool intel = vb == 0x756e6547u && vd == 0x49656e69u && vc == 0x6c65746eu;  // "GenuineIntel"
    __cpuid(1, eax, ebx, ecx, edx);
    const unsigned base = (eax >> 8) & 0xfu, family = base == 0xfu ? base + ((eax >> 20) & 0xffu) : base;
    f.full_width = f.avx512 && (intel || (amd && family >= 0x1a));
    return f;
}

const X86Features& features() {
    static const X86Features f = detect();
    return f;
}
#endif

}  // namespace

bool cpu_full_width_avx512() {
#ifdef CNNFAST_X86
    return features().full_width;
#else
    return false;
#endif
}

bool cpu_supports(Isa isa) {
    switch (isa) {
        case Isa::generic: return true;
#ifdef CNNFAST_X86
        case Isa::avx2: return features().avx2_fma;
        case Isa::avx512: return features().avx512;
#else
        case Isa::avx2:
        case Isa::avx512: return false;
#endif
    }
    return false;
}

}  // namespace cnnfast
