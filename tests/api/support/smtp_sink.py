#!/usr/bin/env python3
"""A real SMTP server for the reset-mail tests (tests/api/mail.rs).

    python3 tests/support/smtp_sink.py PORT DIR [USER:PASSWORD]

Listens on 127.0.0.1:PORT with aiosmtpd and writes every message it accepts to DIR as
NNNNNN.json: {"mail_from", "rcpt_tos", "auth_login", "content" (the raw message as received),
"headers" ([name, decoded value] pairs), "text" (the decoded text/plain body)}. Each file is
written under a temporary name and renamed, so a reader never sees half a message.

With USER:PASSWORD it offers AUTH PLAIN/LOGIN without TLS and refuses mail from a client
that has not logged in with exactly those credentials.

Prints "ready" on stdout once it accepts connections, then runs until killed or until its
standard input closes (so it never outlives the test that started it).
"""

import email
import email.policy
import itertools
import json
import os
import sys
import threading
import warnings

try:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult
except ImportError:
    print(
        "smtp_sink.py: the Python package aiosmtpd is missing; "
        "install it with `python3 -m pip install aiosmtpd`",
        file=sys.stderr,
        flush=True,
    )
    sys.exit(3)


class Sink:
    def __init__(self, directory):
        self.directory = directory
        self.counter = itertools.count(1)
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        body = parsed.get_body(preferencelist=("plain",))
        login = getattr(session, "login_data", None)
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "auth_login": login.decode("utf-8", "replace") if isinstance(login, bytes) else None,
            "content": raw.decode("utf-8", "replace"),
            "headers": [[name, str(value)] for name, value in parsed.items()],
            "text": body.get_content() if body is not None else None,
        }
        with self.lock:
            name = "%06d.json" % next(self.counter)
        temporary = os.path.join(self.directory, "." + name + ".tmp")
        with open(temporary, "w", encoding="utf-8") as out:
            json.dump(record, out)
        os.replace(temporary, os.path.join(self.directory, name))
        return "250 OK delivered"


class Authenticator:
    def __init__(self, user, password):
        self.user = user.encode("utf-8")
        self.password = password.encode("utf-8")

    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = getattr(auth_data, "login", None) == self.user and getattr(auth_data, "password", None) == self.password
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


def main():
    if len(sys.argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    port = int(sys.argv[1])
    directory = sys.argv[2]
    os.makedirs(directory, exist_ok=True)
    options = {}
    if len(sys.argv) == 4:
        # Plain AUTH is the point of this mode: it checks that the client sends the credentials.
        warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
        user, _, password = sys.argv[3].partition(":")
        options = {
            "authenticator": Authenticator(user, password),
            "auth_required": True,
            "auth_require_tls": False,
        }
    controller = Controller(Sink(directory), hostname="127.0.0.1", port=port, **options)
    controller.start()  # returns once the server answers a probe connection
    print("ready", flush=True)
    try:
        sys.stdin.read()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
