#!/usr/bin/env python3
"""A small aiosmtpd server for the outbox-smtp interop tests.

Listens on 127.0.0.1 on a free port and prints "PORT <n>" on stdout once ready. Every message
received is written to --out DIR as <n>.eml, preceded by "X-Envelope-From:" and
"X-Envelope-To:" lines. Runs until killed.

  --user NAME --password PW     offer AUTH PLAIN/LOGIN and require it
  --cert PEM --key PEM          offer STARTTLS (required before anything else)
  --implicit-tls                with --cert/--key: TLS from the first byte (smtps)
"""

import argparse
import asyncio
import itertools
import os
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Handler:
    def __init__(self, out):
        self.out = out
        self.counter = itertools.count(1)

    async def handle_DATA(self, server, session, envelope):
        if self.out:
            path = os.path.join(self.out, "%d.eml" % next(self.counter))
            with open(path, "wb") as f:
                f.write(b"X-Envelope-From: " + envelope.mail_from.encode() + b"\r\n")
                for rcpt in envelope.rcpt_tos:
                    f.write(b"X-Envelope-To: " + rcpt.encode() + b"\r\n")
                f.write(envelope.original_content or envelope.content)
        return "250 2.0.0 OK"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--implicit-tls", action="store_true")
    args = p.parse_args()

    context = None
    if args.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == args.user
            and auth_data.password.decode() == args.password
        )
        # handled=False: aiosmtpd then sends the 535 itself.
        return AuthResult(success=ok, handled=False)

    handler = Handler(args.out)

    def factory():
        kwargs = dict(hostname="aiosmtpd.test", enable_SMTPUTF8=True)
        if args.user:
            kwargs.update(authenticator=authenticator, auth_required=True)
        if context and not args.implicit_tls:
            kwargs.update(tls_context=context, require_starttls=True)
        if args.implicit_tls:
            # aiosmtpd cannot see implicit TLS; the socket is TLS from the start anyway.
            kwargs.update(auth_require_tls=False)
        elif not context:
            kwargs.update(auth_require_tls=False)
        return SMTP(handler, **kwargs)

    async def serve():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            factory, "127.0.0.1", 0, ssl=context if args.implicit_tls else None
        )
        port = server.sockets[0].getsockname()[1]
        print("PORT %d" % port, flush=True)
        await server.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__":
    sys.exit(main())
