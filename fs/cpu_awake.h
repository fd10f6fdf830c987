/* cpu_awake: keeps idle CPUs out of deep sleep while the mount serves a
 * burst of requests.
 *
 * Every FUSE request is a round trip between the reader and the daemon:
 * each side sleeps until the other wakes it. A CPU with nothing to run
 * halts, and waking a halted CPU costs tens of microseconds (in a virtual
 * machine without guest halt polling, an exit to the hypervisor each time:
 * here 20 to 40 us, so a LOOKUP and a READ of a small message took about
 * 240 us against 135 us for the same file read directly). While requests come,
 * this holds a CPU latency request of 0 us (/dev/cpu_dma_latency, the
 * kernel's PM QoS interface): idle CPUs poll instead of halting. It lets
 * go CPU_AWAKE_LINGER_MS after the last request, and when the daemon ends
 * for any reason, since the kernel drops the request with the descriptor.
 *
 * Only a reader that waits on the mount back to back is worth it: one
 * that reads a file now and then (a desktop indexer taking its time, a
 * `cat`) loses a few wake-ups in milliseconds, and holding for it would
 * keep CPUs polling most of the time. So the request is made once
 * CPU_AWAKE_BURST requests came each within CPU_AWAKE_GAP_MS of the one
 * before.
 *
 * Threads: cpu_awake_note may be called from any thread; one thread of
 * its own opens and closes the request. */
#ifndef MAILDISK_CPU_AWAKE_H
#define MAILDISK_CPU_AWAKE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define CPU_AWAKE_DEVICE "/dev/cpu_dma_latency"
/* How long the request outlives the last request served: longer than the
 * gap between two requests of a reader walking files, short enough that
 * the end of a burst keeps CPUs polling for a blink only. */
#define CPU_AWAKE_LINGER_MS 20
/* A burst: this many requests in a row, each at most CPU_AWAKE_GAP_MS
 * after the one before. A cold walk of a folder makes 16 requests in
 * about 2 ms. */
#define CPU_AWAKE_BURST 16
#define CPU_AWAKE_GAP_MS 4

struct cpu_awake {
	const char *device;          /* borrowed */
	atomic_int_fast64_t last_ns; /* CLOCK_MONOTONIC of the last note */
	atomic_int run;              /* notes in a row, each within the gap */
	atomic_bool held;            /* the device is open with 0 written */
	atomic_bool usable;          /* false once the device could not be used */
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool wanted, stop;           /* protected by lock */
	bool started;
	pthread_t thread;
	uint64_t holds;              /* times the request was opened; the thread's */
};

/* Starts the holding thread for device (CPU_AWAKE_DEVICE, or a test's
 * file). 0, or a positive errno from pthread_create (nothing to stop). */
int cpu_awake_start(struct cpu_awake *a, const char *device);
/* A request arrived: hold the latency request once it is a burst, or
 * keep holding it. Tens of nanoseconds unless it starts the hold. */
void cpu_awake_note(struct cpu_awake *a);
/* Lets go of the request and joins the thread; returns how many times
 * the request was opened. Safe on a struct that never started. */
uint64_t cpu_awake_stop(struct cpu_awake *a);

#endif
