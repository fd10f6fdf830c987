/* status: names for the fetch layer's scoped results. */
#include "fetch_status.h"

const char *fetch_status_str(enum fetch_status s)
{
	switch (s) {
	case FETCH_OK: return "ok";
	case FETCH_MSG_BAD: return "message failed";
	case FETCH_FOLDER_BAD: return "folder failed";
	case FETCH_ACCOUNT_BAD: return "account failed";
	case FETCH_LOCAL_BAD: return "local store failed";
	case FETCH_STOPPED: return "stopped";
	}
	return "unknown";
}
