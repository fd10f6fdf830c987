#!/usr/bin/env python3
"""The harness alone, without maildisk: a private Dovecot starts, IMAPS,
STARTTLS, POP3 (STLS) and POP3S logins work with the generated CA, a foreign
CA and a wrong password are refused, delivery, expunge and the UIDVALIDITY
reset do what the tests rely on, the cutting proxy cuts, and stop() leaves
no process behind."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

if __name__ == "__main__":
    h.run(h.selftest, deadline=100, needs_maildisk=False)
