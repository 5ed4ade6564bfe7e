"""An aiosmtpd-based SMTP server for the engine's tests: one process per use, configured by flags.

It binds 127.0.0.1 (port 0 unless --port), prints ONE JSON line on stdout when ready:
    {"port": 12345, "ca_pem_path": "/tmp/.../ca.pem" or null}
and appends events as JSON lines to --events (connect, ehlo, starttls, auth, mail_from, rcpt_to, message, quit).
Events never contain a password or token. SIGTERM/SIGINT end it cleanly.

Flags:
  --tls none|starttls|implicit   transport security (default starttls)
  --no-starttls                  with --tls starttls: do not offer STARTTLS (AUTH is then offered in plain text,
                                 so a client that falls back would be caught)
  --tls-max 1.2                  highest TLS version the server speaks (default: 1.3)
  --tls-no-alert                 a failed handshake just closes the connection, without the TLS alert (as many
                                 servers and middleboxes do)
  --ca private                   generate a fresh CA + server certificate at start (the default with TLS)
  --ca-out PATH                  where to write the CA PEM (default: a file next to --events or in a temp dir)
  --wrong-name                   the server certificate is for "wrong.invalid" only (no 127.0.0.1/localhost)
  --cert-days N                  the server certificate expires in N days (default 90)
  --auth-before-tls              with --tls starttls: offer AUTH already before STARTTLS (as well as after)
  --auth plain,login,xoauth2     mechanisms offered (default: none; AUTH is then not advertised)
  --user U --password P          the accepted PLAIN/LOGIN credentials
  --xoauth2-token T              the accepted XOAUTH2 bearer token (user must equal --user when given)
  --max-line N                   command lines longer than N bytes get "500 Command line too long"
  --reject-rcpt [ADDR]           reject RCPT TO (all recipients, or only ADDR) with 550
  --reject-mail                  reject MAIL FROM with 553
  --reject-data                  reject the message after DATA with 554
  --stall-data                   never answer the message after DATA (the client must give up on its own)
  --greeting-drip SECONDS        no SMTP at all: every connection gets a greeting that never ends, one byte per
                                 SECONDS (a server that is alive but far too slow)
  --hostile                      AUTH PLAIN/LOGIN answers a ~1 MB multi-line 535 written to attack whoever
                                 displays it: ANSI escapes, a bare CR, bidi overrides, zero-width characters, and
                                 the password and the client's base64 response echoed (the password split by \x01)
  --hostile-bytes N              size of that reply (default 1000000; SMTP clients cap a reply at about 100 KB)
  --data-delay SECONDS           record the message at once but answer DATA only after SECONDS (a client killed
                                 meanwhile has handed the message over without learning the reply)
  --drop-after-data              close the connection after the message instead of answering it
  --events PATH                  JSON-lines event log
  --port N                       port to bind (default 0 = any free port)
  --verbose                      aiosmtpd/asyncio logging on stderr
"""

import argparse
import asyncio
import base64
import binascii
import collections
import email
import email.policy
import json
import logging
import os
import signal
import ssl
import sys
import tempfile
import threading

from aiosmtpd.smtp import SMTP, AuthResult, MISSING

_events_lock = threading.Lock()


def _send_tls_alerts_on_handshake_failure():
    """asyncio's SSLProtocol aborts the transport on a failed handshake without writing what OpenSSL queued,
    so the client never sees the alert (e.g. protocol_version for a TLS-1.2-only server) and only gets EOF.
    Real servers (Postfix, Exim, ... on OpenSSL) do send it; flush it first so the peer behaves like them."""
    import asyncio.sslproto as sslproto

    original = sslproto.SSLProtocol._on_handshake_complete

    def on_handshake_complete(self, handshake_exc):
        if handshake_exc is not None:
            try:
                self._process_outgoing()
            except Exception:  # the transport may already be gone
                pass
        return original(self, handshake_exc)

    sslproto.SSLProtocol._on_handshake_complete = on_handshake_complete



class Events:
    def __init__(self, path):
        self.path = path

    def emit(self, kind, **fields):
        if not self.path:
            return
        rec = {"event": kind, **fields}
        with _events_lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
            f.flush()


def make_certs(out_dir, wrong_name, host="127.0.0.1", days=90):
    """A fresh CA and a server certificate signed by it (testca.py, in a new directory so nothing is reused):
    for 127.0.0.1, ::1, localhost and the --host address, or only for `wrong.invalid` with --wrong-name."""
    import testca

    ips = tuple(dict.fromkeys(("127.0.0.1", "::1", host)))
    names, ips = (("wrong.invalid",), ()) if wrong_name else (("localhost",), ips)
    paths = testca.ensure(tempfile.mkdtemp(prefix="certs-", dir=out_dir), names=names, ips=ips, days=days)
    return paths["ca"], paths["cert"], paths["key"]


class Handler:
    """aiosmtpd handler: records events, applies rejections, implements XOAUTH2."""

    def __init__(self, args, events):
        self.args = args
        self.events = events

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        self.events.emit("ehlo", hostname=hostname, tls=server._tls_protocol is not None or self.args.tls == "implicit")
        if self.args.no_starttls:
            responses = [r for r in responses if "STARTTLS" not in r]
        return responses

    async def handle_AUTH(self, server, session, envelope, args):
        # args[1] may be an initial response holding the credential: record only the mechanism
        self.events.emit("auth_command", mechanism=args[0].upper() if args else "")
        return MISSING

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.events.emit("mail_from", address=address, authenticated=bool(session.authenticated))
        if self.args.reject_mail:
            return "553 5.7.1 Sender address rejected: not owned by user"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.events.emit("rcpt_to", address=address)
        r = self.args.reject_rcpt
        if r is not None and (r == "*" or r.lower() == address.lower()):
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain",))
        self.events.emit(
            "message",
            mail_from=envelope.mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            header_from=str(msg.get("From", "")),
            header_to=str(msg.get("To", "")),
            subject=str(msg.get("Subject", "")),
            date=str(msg.get("Date", "")),
            message_id=str(msg.get("Message-ID", "")),
            body=body.get_content() if body is not None else "",
            rejected=bool(self.args.reject_data or self.args.drop_after_data),
        )
        if self.args.stall_data:
            await asyncio.sleep(3600)
        if self.args.data_delay > 0:
            await asyncio.sleep(self.args.data_delay)
        if self.args.drop_after_data:
            server.transport.abort()
            return "421 4.3.0 (never sent: the connection is gone)"
        if self.args.reject_data:
            return "554 5.7.1 Message rejected as spam"
        return "250 2.0.0 OK queued as TEST1"

    async def handle_RSET(self, server, session, envelope):
        self.events.emit("rset")
        return "250 OK"

    async def handle_QUIT(self, server, session, envelope):
        self.events.emit("quit")
        return "221 Bye"

    async def auth_XOAUTH2(self, server, args):
        if len(args) == 1:
            blob = await server.challenge_auth("", encode_to_b64=False)
            if blob is MISSING:
                self.events.emit("auth", mechanism="XOAUTH2", user=None, success=False)
                return AuthResult(success=False, handled=True)
        else:
            try:
                blob = base64.b64decode(args[1].encode(), validate=True)
            except (binascii.Error, ValueError):
                await server.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        user, token = None, None
        try:
            for part in blob.decode("utf-8").split("\x01"):
                if part.startswith("user="):
                    user = part[len("user="):]
                elif part.startswith("auth=Bearer "):
                    token = part[len("auth=Bearer "):]
        except UnicodeDecodeError:
            pass
        ok = (
            token is not None
            and token == self.args.xoauth2_token
            and (self.args.user is None or user == self.args.user)
        )
        self.events.emit("auth", mechanism="XOAUTH2", user=user, success=ok)
        if ok:
            return AuthResult(success=True, auth_data=user)
        # Like Gmail / Office 365: a 334 challenge with a base64 JSON error, then the final 535 after the
        # client's empty line.
        err = json.dumps({"status": "401", "schemes": "Bearer", "scope": "https://mail.example/"})
        await server.challenge_auth(err, encode_to_b64=True)
        await server.push("535 5.7.8 Username and Password not accepted (XOAUTH2)")
        return AuthResult(success=False, handled=True)


def hostile_reply(password, client_b64, size):
    """The --hostile 535: a multi-line reply of about `size` bytes (--hostile-bytes)."""
    split = password[:3] + "\x01" + password[3:] if password else ""
    lines = [
        "5.7.8 \x1b[2J\x1b[31mALERT\x1b[0m bare\rCR",
        "5.7.8 \u202eevil bidi\u202c \u2066isolate\u2069 zero\u200bwidth \ufeffbom",
        "5.7.8 you said " + split,
        "5.7.8 you sent " + (client_b64 or ""),
    ]
    lines += ["5.7.8 " + "x" * 900] * max(1, size // 910)
    out = "".join("535-%s\r\n" % l for l in lines[:-1]) + "535 %s\r\n" % lines[-1]
    return out.encode("utf-8")


class HostileHandler(Handler):
    """--hostile: PLAIN and LOGIN always fail with hostile_reply()."""

    async def auth_PLAIN(self, server, args):
        sent = args[1] if len(args) > 1 else None
        if sent is None:
            sent = await server.challenge_auth("", encode_to_b64=False)
            sent = base64.b64encode(sent).decode() if isinstance(sent, bytes) else ""
        return await self._refuse(server, "PLAIN", sent)

    async def auth_LOGIN(self, server, args):
        user = await server.challenge_auth("Username:")
        pw = await server.challenge_auth("Password:")
        sent = base64.b64encode(pw).decode() if isinstance(pw, bytes) else ""
        return await self._refuse(server, "LOGIN", sent)

    async def _refuse(self, server, mechanism, sent):
        self.events.emit("auth", mechanism=mechanism, user=None, success=False, hostile=True)
        server._writer.write(hostile_reply(self.args.password, sent, self.args.hostile_bytes))
        await server._writer.drain()
        return AuthResult(success=False, handled=True)


async def drip_greeting(reader, writer, interval, events):
    """--greeting-drip: a greeting line that never ends, one byte per interval."""
    events.emit("connect")
    data = b"220-" + b"slow" * 10_000
    try:
        for i in range(len(data)):
            writer.write(data[i:i + 1])
            await writer.drain()
            await asyncio.sleep(interval)
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except RuntimeError:  # the loop is closing (SIGTERM)
            pass


def serve_drip(args, events):
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(asyncio.start_server(
        lambda r, w: drip_greeting(r, w, args.greeting_drip, events), host=args.host, port=args.port))
    sys.stdout.write(json.dumps({"port": server.sockets[0].getsockname()[1], "ca_pem_path": None}) + "\n")
    sys.stdout.flush()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    loop.run_until_complete(stop)
    server.close()
    loop.close()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tls", choices=["none", "starttls", "implicit"], default="starttls")
    p.add_argument("--no-starttls", action="store_true")
    p.add_argument("--tls-max", choices=["1.2", "1.3"], default="1.3")
    p.add_argument("--tls-no-alert", action="store_true")
    p.add_argument("--ca", choices=["private"], default="private")
    p.add_argument("--ca-out")
    p.add_argument("--wrong-name", action="store_true")
    p.add_argument("--cert-days", type=int, default=90)
    p.add_argument("--auth-before-tls", action="store_true")
    p.add_argument("--auth", default="")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--xoauth2-token")
    p.add_argument("--max-line", type=int, default=512)
    p.add_argument("--reject-rcpt", nargs="?", const="*", default=None)
    p.add_argument("--reject-mail", action="store_true")
    p.add_argument("--reject-data", action="store_true")
    p.add_argument("--stall-data", action="store_true")
    p.add_argument("--greeting-drip", type=float)
    p.add_argument("--hostile", action="store_true")
    p.add_argument("--hostile-bytes", type=int, default=1_000_000)
    p.add_argument("--data-delay", type=float, default=0.0)
    p.add_argument("--drop-after-data", action="store_true")
    p.add_argument("--events")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (e.g. the test node's gateway)")
    p.add_argument("--verbose", action="store_true", help="aiosmtpd/asyncio logs on stderr")
    args = p.parse_args()
    if not args.tls_no_alert:
        _send_tls_alerts_on_handshake_failure()

    # Expected failures (refused handshakes, dropped connections) would otherwise print tracebacks into the
    # test output.
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.CRITICAL)

    events = Events(args.events)
    if args.greeting_drip:
        return serve_drip(args, events)
    mechs = {m.strip().upper() for m in args.auth.split(",") if m.strip()}
    unknown = mechs - {"PLAIN", "LOGIN", "XOAUTH2"}
    if unknown:
        p.error("unknown --auth mechanisms: %s" % ",".join(sorted(unknown)))

    tls_ctx = None
    ca_path = None
    if args.tls != "none":
        out_dir = (
            os.path.dirname(os.path.abspath(args.ca_out)) if args.ca_out
            else os.path.dirname(os.path.abspath(args.events)) if args.events
            else tempfile.mkdtemp(prefix="smtp-peer-")
        )
        ca_path, cert_path, key_path = make_certs(out_dir, args.wrong_name, args.host, args.cert_days)
        if args.ca_out and os.path.abspath(args.ca_out) != ca_path:
            with open(ca_path, "rb") as src, open(args.ca_out, "wb") as dst:
                dst.write(src.read())
            ca_path = os.path.abspath(args.ca_out)
        tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls_ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if args.tls_max == "1.2":
            tls_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        tls_ctx.load_cert_chain(cert_path, key_path)

    def authenticator(server, session, envelope, mechanism, auth_data):
        login = auth_data.login.decode("utf-8", "replace")
        ok = (
            args.user is not None
            and args.password is not None
            and auth_data.login == args.user.encode()
            and auth_data.password == args.password.encode()
        )
        events.emit("auth", mechanism=mechanism, user=login, success=ok)
        # handled=False: aiosmtpd answers a failure with "535 5.7.8 Authentication credentials invalid"
        return AuthResult(success=ok, handled=False)

    handler = (HostileHandler if args.hostile else Handler)(args, events)

    class PeerSMTP(SMTP):
        command_size_limit = args.max_line
        # The stream limit only bounds how much one line may buffer; long SASL responses (a big XOAUTH2
        # token sent after the empty challenge) must fit, while commands are still capped by --max-line.
        line_length_limit = 64 * 1024

        def connection_lost(self, exc):
            # the client's connection ended (QUIT, close or a dead process): lets a test wait for it
            events.emit("disconnect")
            super().connection_lost(exc)

    exclude = [m for m in ("PLAIN", "LOGIN", "XOAUTH2") if m not in mechs]
    starttls_ctx = tls_ctx if args.tls == "starttls" else None

    def factory():
        # Called by asyncio on TCP accept, before any TLS handshake: counts every connection.
        events.emit("connect")
        smtp = PeerSMTP(
            handler,
            hostname="peer.test",
            ident="smtp-peer",
            tls_context=starttls_ctx,
            require_starttls=False,
            # With TLS configured, AUTH is offered only after STARTTLS. Without TLS (or with STARTTLS
            # withheld) it is offered in plain text, so a client that falls back to plain is caught.
            # --auth-before-tls offers it before STARTTLS anyway (a server the early warning
            # AuthOverPlaintextOffered is about).
            auth_require_tls=(args.tls == "starttls" and not args.no_starttls and not args.auth_before_tls),
            authenticator=authenticator,
            auth_exclude_mechanism=exclude,
            decode_data=False,
        )
        # aiosmtpd's per-command limits default to SMTP.command_size_limit (512) through a class-level
        # defaultdict; give this connection its own with --max-line.
        smtp.command_size_limits = collections.defaultdict(lambda: args.max_line)
        return smtp

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    if not args.verbose:
        loop.set_exception_handler(lambda _loop, _ctx: None)
    server = loop.run_until_complete(
        loop.create_server(
            factory, host=args.host, port=args.port,
            ssl=tls_ctx if args.tls == "implicit" else None,
        )
    )
    port = server.sockets[0].getsockname()[1]
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    sys.stdout.write(json.dumps({"port": port, "ca_pem_path": ca_path}) + "\n")
    sys.stdout.flush()
    loop.run_until_complete(stop)
    server.close()
    loop.run_until_complete(server.wait_closed())
    loop.close()


if __name__ == "__main__":
    main()
