/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The few kernel definitions vmc_ring.h and vmc_proto.h use,
 * for compiling them in user space (unit tests, ThreadSanitizer, libFuzzer).
 *
 * Barriers map to C11 atomics so ThreadSanitizer understands them: a
 * release store / acquire load is exactly that, smp_mb() is a seq_cst fence,
 * smp_wmb()/smp_rmb() are release/acquire fences (at least as strong),
 * READ_ONCE/WRITE_ONCE are relaxed atomic accesses (the kernel's volatile
 * accesses are single-copy atomic for aligned words too).
 */
#ifndef VMC_USER_H
#define VMC_USER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <endian.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int32_t s32;
typedef uint16_t __le16;
typedef uint32_t __le32;
typedef uint64_t __le64;

#define cpu_to_le16(x) htole16(x)
#define le16_to_cpu(x) le16toh(x)
#define cpu_to_le32(x) htole32(x)
#define le32_to_cpu(x) le32toh(x)
#define cpu_to_le64(x) htole64(x)
#define le64_to_cpu(x) le64toh(x)

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define READ_ONCE(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define WRITE_ONCE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#define smp_load_acquire(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define smp_store_release(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define smp_mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define smp_wmb() __atomic_thread_fence(__ATOMIC_RELEASE)
#define smp_rmb() __atomic_thread_fence(__ATOMIC_ACQUIRE)

#define min_t(t, a, b) ((t)(a) < (t)(b) ? (t)(a) : (t)(b))
#define ALIGN(x, a) (((x) + ((a) - 1)) & ~((__typeof__(x))(a) - 1))
#define BUILD_BUG_ON(c) _Static_assert(!(c), #c)
#define BIT(n) (1u << (n))
#define is_power_of_2(n) ((n) != 0 && (((n) & ((n) - 1)) == 0))

#ifndef EPROTO
#error "EPROTO missing"
#endif

#endif /* VMC_USER_H */
