/* store_fixture: the fixture of the store's unit-test programs: a fresh
 * store under /tmp, its index open as the writer, and alice's INBOX. */
#ifndef MAILDISK_TEST_STORE_FIXTURE_H
#define MAILDISK_TEST_STORE_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "../../cache/store.h"
#include "fixture.h"

#define FOLDER_PATH "mail/alice/work/INBOX"

struct fixture {
	char dir[64];
	char root[128];
	struct store *s;
	struct index *ix;
	struct index_folder f;
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof *fx);

	assert_true(fixture_mkdtemp(fx->dir, sizeof fx->dir, "test_store"));
	snprintf(fx->root, sizeof fx->root, "%s/store", fx->dir);
	assert_int_equal(store_open(fx->root, &fx->s), 0);
	assert_int_equal(store_index_open(fx->s, false, &fx->ix), 0);
	assert_int_equal(index_folder_ensure(fx->ix, "alice", "work", "INBOX", FOLDER_PATH, &fx->f), 0);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	index_folder_release(&fx->f);
	index_close(&fx->ix);
	store_close(&fx->s);
	fixture_rmtree(fx->dir);
	free(fx);
	return 0;
}

#endif
