/* sync_names: server folders whose names decode to one name.
 *
 * The index knows a folder by (user, account, name), name being the UTF-8
 * decoding of the server's modified UTF-7 spelling (RFC 3501 section
 * 5.1.3). A name that is not valid modified UTF-7 is kept as its raw bytes,
 * so a raw 8-bit "Äpfel" and the UTF-7 "&AMQ-pfel" arrive as the same name,
 * and a server may list one spelling twice. Either would make two server
 * folders share one row and one Maildir. Pure functions, any thread. */
#ifndef MAILDISK_SYNC_NAMES_H
#define MAILDISK_SYNC_NAMES_H

#include <stddef.h>
#include "imap.h"

/* Makes the names of the selectable mailboxes unique. Of those that share a
 * name, the one whose raw spelling is that name's modified UTF-7 keeps it
 * (else the first listed); each other one is renamed "<name> (N)", N the
 * smallest from 2 on that no listed mailbox has, and logged; a mailbox
 * listed twice with the same raw spelling is listed once (the copy is
 * marked noselect). *notes_r: a malloc'd array of n notes (NULL for each
 * mailbox not renamed), to be stored with the folder (index_folder_set_note);
 * free with sync_names_free. 0, or -ENOMEM (mbs then unchanged). */
int sync_names_dedupe(const char *label, struct imap_mailbox *mbs, size_t n, char ***notes_r);
void sync_names_free(char **notes, size_t n);

#endif
