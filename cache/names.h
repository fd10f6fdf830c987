/* names: the one way a name from a server, a config or a message becomes a
 * path component, and the one way a message gets its file name in the mount.
 *
 * Escaping rule (reversible, documented in README): a component is UTF-8;
 * these bytes are written as %XX (two upper-case hex digits):
 *   '%' itself, '/', bytes 0x00-0x1F and 0x7F, bytes that are not part of
 *   valid UTF-8, and a '.' in the first position (so ".", ".." and hidden
 *   names cannot arise).
 * The empty name is written as a lone "%" (which never results otherwise).
 * Nothing produced can contain '/', NUL, a control character, or be "." or
 * "..".
 *
 * Folder path components have one more rule: a component that is exactly
 * "cur", "new" or "tmp" has its first byte escaped ("%63ur", "%6Eew",
 * "%74mp"), so no folder's directory can be another folder's Maildir
 * subdirectory. The mount shows such a component under its real name
 * (names_folder_view). Pure functions, any thread. */
#ifndef MAILDISK_NAMES_H
#define MAILDISK_NAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include "buf.h"

#define NAMES_COMPONENT_MAX 255

/* Appends the escaped form of in[0..len) to out. 0, or -ENAMETOOLONG when the
 * result would pass NAMES_COMPONENT_MAX bytes, or a buf error. */
int names_escape(const char *in, size_t len, struct buf *out);

/* Reverses names_escape on one component; -EINVAL on a malformed escape. */
int names_unescape(const char *in, size_t len, struct buf *out);

/* A folder name (UTF-8, already decoded from modified UTF-7) split on the
 * server's hierarchy delimiter (0 for none) becomes a relative path of
 * escaped components joined by '/'. "a/b" with delimiter '.' is one
 * component "a%2Fb"; "../x" with delimiter '/' becomes "%2E./x";
 * "INBOX.tmp" with '.' becomes "INBOX/%74mp". */
int names_folder_path(const char *folder, char delim, struct buf *out);

/* Reverses one component of names_folder_path (names_unescape, plus the
 * reserved names); -EINVAL for anything names_folder_path cannot produce,
 * which includes a raw "cur", "new" or "tmp". */
int names_folder_unescape(const char *in, size_t len, struct buf *out);

/* The name the mount shows for a component of a folder's store path: the
 * component itself, except that "%63ur", "%6Eew" and "%74mp" show as "cur",
 * "new" and "tmp" (the mount is not a Maildir, so they clash with nothing
 * there). Returns comp or a static string. */
const char *names_folder_view(const char *comp);

/* Whether a store path component is "cur", "new" or "tmp" (len bytes). */
bool names_is_maildir_sub(const char *comp, size_t len);

/* The file name a message has in the mount:
 *   "YYYY-MM-DD HHMM <subject> ~<tag>.eml"
 * date in local time (0 or negative: "0000-00-00 0000"); subject already
 * decoded to UTF-8 (NULL or empty: "(no subject)"); whitespace runs folded to
 * one space; '/', control characters and invalid UTF-8 replaced; the subject
 * is cut at a UTF-8 boundary so the whole name fits NAMES_COMPONENT_MAX.
 * tag is a short ASCII alphanumeric string that makes the name unique in its
 * folder (see names_tag). */
int names_message_file(int64_t date, const char *subject, const char *tag, struct buf *out);

/* Writes a stable tag of len hex digits (len <= 16, tag_r has len+1 bytes)
 * derived from the message identity (account, folder, uidvalidity,
 * remote id). Same inputs, same tag, on every machine. */
void names_tag(const char *account, const char *folder, uint32_t uidvalidity,
	       const char *remote_id, char *tag_r, size_t len);

#endif
