/* fixture: what the unit-test programs share: a fresh directory under /tmp
 * for a test and its removal with everything below it, the table of tests
 * run between setup and teardown, and the shape of a table-driven case.
 * Header only (each test is one program); every function is static
 * inline, so a program pays only for what it uses. */
#ifndef MAILDISK_TEST_FIXTURE_H
#define MAILDISK_TEST_FIXTURE_H

#include <ftw.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "../../cache/log.h"

static inline int fixture_rm_entry(const char *path, const struct stat *st, int flag,
				   struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* A string literal as pointer and length (it may hold NUL bytes). */
#define S(lit) lit, sizeof(lit) - 1

/* A table-driven case: bytes in (len of them, S() fills both) and the
 * text expected from them. */
struct fixture_case {
	const char *in;
	size_t len;
	const char *out;
};

/* Creates /tmp/<prefix>.XXXXXX (mkdtemp) and puts its path in dir (size
 * n). false when it cannot. */
static inline bool fixture_mkdtemp(char *dir, size_t n, const char *prefix)
{
	int len = snprintf(dir, n, "/tmp/%s.XXXXXX", prefix);

	return len > 0 && (size_t)len < n && mkdtemp(dir) != NULL;
}

/* Removes dir and everything below it (no symlink is followed). 0 or -1. */
static inline int fixture_rmtree(const char *dir)
{
	return nftw(dir, fixture_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A test run between the program's own setup and teardown (a program
 * that includes this and uses it defines both). */
#define FIXTURE_TEST(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

/* Runs the program's table of tests with the log at error level, or at
 * debug level when TEST_VERBOSE is set in the environment. */
#define FIXTURE_RUN(name, tests)                                                             \
	(log_init((name), false, getenv("TEST_VERBOSE") ? LOG_LVL_DEBUG : LOG_LVL_ERROR),    \
	 cmocka_run_group_tests((tests), NULL, NULL))

#endif
