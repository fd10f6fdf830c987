/* cpu_awake: see cpu_awake.h. */
#include "cpu_awake.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../cache/log.h"

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The open request, or -1 (then the device is given up, said once). */
static int hold_open(struct cpu_awake *a)
{
	const int32_t zero = 0;
	int fd = open(a->device, O_WRONLY | O_CLOEXEC);

	if (fd >= 0 && write(fd, &zero, sizeof zero) == (ssize_t)sizeof zero)
		return fd;
	log_info("mount: cannot keep idle CPUs awake while serving (%s: %s); reads through the mount pay a CPU wake-up per request",
		 a->device, strerror(errno));
	if (fd >= 0)
		close(fd);
	atomic_store(&a->usable, false);
	return -1;
}

/* Waits, holding a->lock, until CPU_AWAKE_LINGER_MS passed without a note
 * or a stop is asked. */
static void linger(struct cpu_awake *a)
{
	const int64_t linger_ns = (int64_t)CPU_AWAKE_LINGER_MS * 1000000;

	while (!a->stop) {
		int64_t left = atomic_load(&a->last_ns) + linger_ns - now_ns();
		struct timespec until;

		if (left <= 0)
			break;
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += left / 1000000000;
		until.tv_nsec += left % 1000000000;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&a->wake, &a->lock, &until);
	}
}

static void *awake_main(void *p)
{
	struct cpu_awake *a = p;

	pthread_mutex_lock(&a->lock);
	for (;;) {
		int fd;

		while (!a->wanted && !a->stop)
			pthread_cond_wait(&a->wake, &a->lock);
		if (a->stop)
			break;
		pthread_mutex_unlock(&a->lock);
		fd = hold_open(a);
		pthread_mutex_lock(&a->lock);
		if (fd >= 0) {
			a->holds++;
			atomic_store(&a->held, true);
			linger(a);
		}
		/* Cleared together under the lock: a note that finds the
		 * request not held asks for it again. */
		atomic_store(&a->held, false);
		a->wanted = false;
		if (fd >= 0)
			close(fd);
	}
	pthread_mutex_unlock(&a->lock);
	return NULL;
}

int cpu_awake_start(struct cpu_awake *a, const char *device)
{
	pthread_condattr_t ca;
	int rc;

	memset(a, 0, sizeof *a);
	a->device = device;
	atomic_init(&a->last_ns, 0);
	atomic_init(&a->run, 0);
	atomic_init(&a->held, false);
	atomic_init(&a->usable, false);
	pthread_mutex_init(&a->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&a->wake, &ca);
	pthread_condattr_destroy(&ca);
	rc = pthread_create(&a->thread, NULL, awake_main, a);
	if (rc) {
		pthread_cond_destroy(&a->wake);
		pthread_mutex_destroy(&a->lock);
		return rc;
	}
	a->started = true;
	atomic_store(&a->usable, true);
	return 0;
}

void cpu_awake_note(struct cpu_awake *a)
{
	const int64_t gap_ns = (int64_t)CPU_AWAKE_GAP_MS * 1000000;
	int64_t now, before;

	if (!atomic_load_explicit(&a->usable, memory_order_relaxed))
		return;
	now = now_ns();
	before = atomic_exchange_explicit(&a->last_ns, now, memory_order_relaxed);
	if (atomic_load(&a->held))
		return;
	/* Racing notes may miscount a run by one or two: harmless. */
	if (now - before > gap_ns) {
		atomic_store_explicit(&a->run, 1, memory_order_relaxed);
		return;
	}
	if (atomic_fetch_add_explicit(&a->run, 1, memory_order_relaxed) + 1 < CPU_AWAKE_BURST)
		return;
	pthread_mutex_lock(&a->lock);
	if (!a->wanted && !a->stop) {
		a->wanted = true;
		pthread_cond_signal(&a->wake);
	}
	pthread_mutex_unlock(&a->lock);
}

uint64_t cpu_awake_stop(struct cpu_awake *a)
{
	uint64_t holds;

	if (!a->started)
		return 0;
	atomic_store(&a->usable, false);
	pthread_mutex_lock(&a->lock);
	a->stop = true;
	pthread_cond_signal(&a->wake);
	pthread_mutex_unlock(&a->lock);
	pthread_join(a->thread, NULL);
	holds = a->holds;
	pthread_cond_destroy(&a->wake);
	pthread_mutex_destroy(&a->lock);
	a->started = false;
	return holds;
}
