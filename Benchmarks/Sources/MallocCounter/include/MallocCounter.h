#ifndef PILEGATE_MALLOC_COUNTER_H
#define PILEGATE_MALLOC_COUNTER_H
#include <stdint.h>

/// Allocation calls (malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign) since start.
int64_t malloc_counter_allocations(void);
/// free calls with a non-null pointer since start.
int64_t malloc_counter_frees(void);

#endif
