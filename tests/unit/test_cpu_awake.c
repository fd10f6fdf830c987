/* Unit tests for fs/cpu_awake.c, on a plain file standing in for
 * /dev/cpu_dma_latency: a note now and then holds nothing; a burst of
 * notes holds the request (the file open, 0 written), which is kept while
 * notes come, let go after the linger, taken again by the next burst, and
 * let go at stop. */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../fs/cpu_awake.h"

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/* True when this process has path open. */
static bool is_open(const char *path)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	bool found = false;

	assert_non_null(d);
	while (!found && (e = readdir(d))) {
		char link[300], target[PATH_MAX];
		ssize_t n;

		snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
		n = readlink(link, target, sizeof target - 1);
		if (n > 0) {
			target[n] = '\0';
			found = strcmp(target, path) == 0;
		}
	}
	closedir(d);
	return found;
}

/* Waits up to 5 s for a->held to become want. */
static bool wait_held(struct cpu_awake *a, bool want)
{
	for (int i = 0; i < 5000; i++) {
		if (atomic_load(&a->held) == want)
			return true;
		sleep_ms(1);
	}
	return false;
}

/* Notes back to back: a reader waiting on the mount. */
static void burst(struct cpu_awake *a)
{
	for (int i = 0; i < 4 * CPU_AWAKE_BURST; i++)
		cpu_awake_note(a);
}

static char device[] = "/tmp/maildisk-test-awake-XXXXXX";

static int setup(void **state)
{
	int fd = mkstemp(device);

	(void)state;
	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(device);
	return 0;
}

static void test_burst_holds_once(void **state)
{
	struct cpu_awake a;
	int32_t written = -1;
	int fd, notes = 100;

	(void)state;
	assert_int_equal(cpu_awake_start(&a, device), 0);
	assert_false(atomic_load(&a.held));
	assert_false(is_open(device));

	/* Notes further apart than the gap: no burst, no hold. */
	for (int i = 0; i < 2 * CPU_AWAKE_BURST; i++) {
		cpu_awake_note(&a);
		sleep_ms(3 * CPU_AWAKE_GAP_MS);
	}
	sleep_ms(50);
	assert_false(atomic_load(&a.held));
	assert_false(is_open(device));

	burst(&a);
	assert_true(wait_held(&a, true));
	assert_true(is_open(device));
	fd = open(device, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, &written, sizeof written), (ssize_t)sizeof written);
	close(fd);
	assert_int_equal(written, 0);   /* 0 us: poll, never halt */

	/* A reader's requests come well inside the linger: one hold. */
	for (int i = 0; i < notes; i++) {
		cpu_awake_note(&a);
		sleep_ms(1);
	}
	/* Quiet for longer than the linger: let go. */
	assert_true(wait_held(&a, false));
	assert_false(is_open(device));

	/* The next burst holds it again. */
	burst(&a);
	assert_true(wait_held(&a, true));
	/* At most a few re-holds if this machine stalled us past the linger;
	 * one hold per note would be 101. */
	uint64_t holds = cpu_awake_stop(&a);
	assert_true(holds >= 2 && holds <= 10);
	assert_false(is_open(device));
}

static void test_stop_while_held(void **state)
{
	struct cpu_awake a;

	(void)state;
	assert_int_equal(cpu_awake_start(&a, device), 0);
	burst(&a);
	assert_true(wait_held(&a, true));
	assert_int_equal(cpu_awake_stop(&a), 1);
	assert_false(atomic_load(&a.held));
	assert_false(is_open(device));
	/* A note after stop does nothing (a request racing the unmount). */
	cpu_awake_note(&a);
	assert_false(is_open(device));
}

static void test_unusable_device(void **state)
{
	struct cpu_awake a;

	(void)state;
	assert_int_equal(cpu_awake_start(&a, "/nonexistent/maildisk/cpu_dma_latency"), 0);
	burst(&a);
	for (int i = 0; i < 5000 && atomic_load(&a.usable); i++)
		sleep_ms(1);
	assert_false(atomic_load(&a.usable));   /* given up, said once */
	cpu_awake_note(&a);
	assert_false(atomic_load(&a.held));
	assert_int_equal(cpu_awake_stop(&a), 0);
}

static void test_never_started(void **state)
{
	struct cpu_awake a;

	(void)state;
	memset(&a, 0, sizeof a);
	cpu_awake_note(&a);   /* not usable: no thread to ask */
	assert_int_equal(cpu_awake_stop(&a), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_burst_holds_once),
		cmocka_unit_test(test_stop_while_held),
		cmocka_unit_test(test_unusable_device),
		cmocka_unit_test(test_never_started),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
