/* utf7: IMAP modified UTF-7 mailbox names (RFC 3501 section 5.1.3).
 * Pure functions, any thread. */
#ifndef MAILDISK_UTF7_H
#define MAILDISK_UTF7_H

#include <stddef.h>
#include "../cache/buf.h"

/* Appends the UTF-8 form of a modified UTF-7 name to out. -EINVAL for a
 * malformed name (bad base64, unterminated shift, "&-" misuse such as an
 * encoded printable ASCII char, UTF-16 surrogate errors, a decoded NUL);
 * out is then left as it was. */
int utf7_decode(const char *in, size_t len, struct buf *out);

/* Appends the modified UTF-7 form of a UTF-8 name. -EINVAL for invalid UTF-8. */
int utf7_encode(const char *in, size_t len, struct buf *out);

#endif
