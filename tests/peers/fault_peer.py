"""A scripted SMTP server for exact faults (tests/faults.rs): plain asyncio sockets, one fault per process.

    python fault_peer.py --fault NAME [--tls none|starttls|implicit] [--cert ok|expired|not-yet-valid|wrong-name]
                         [--events PATH] [--ca-out PATH]

It binds 127.0.0.1 on a free port and prints ONE JSON line on stdout when ready (as smtp_peer.py does):
    {"port": 12345, "ca_pem_path": "/tmp/.../ca.pem" or null}
Events go to --events as JSON lines: connect, command {"verb", "tls", "mechanism" for AUTH}, tls (handshake done),
sasl_response (never its content), message {"bytes"}. No credential is ever written: AUTH is recorded as its
mechanism only. Without a fault the peer is a well-behaved ESMTP server (STARTTLS with --tls starttls; AUTH PLAIN,
LOGIN and XOAUTH2 accepting anything; every message queued).

Faults (--fault):
  ok                    no fault
  tarpit                accepts and never says anything
  greeting-421          "421 4.3.2 ..." greeting, then closes
  greeting-554          "554 5.7.1 ..." greeting, then answers every command but QUIT with 503
  greeting-drip         a greeting line that never ends, one byte per second
  ssh-banner            an SSH-style banner instead of a greeting, then silence
  greeting-1mb          a 1 MB multi-line 220 greeting (short lines), then a normal session
  close-after-greeting  the greeting, then the connection is closed
  ehlo-500 / ehlo-502   EHLO refused with 500 / 502 (HELO works)
  no-starttls           with --tls starttls: STARTTLS not advertised, AUTH offered in plain text
  starttls-454          STARTTLS advertised, answered "454 4.7.0 TLS not available due to temporary reason"
  close-after-starttls  STARTTLS answered 220, then the connection is closed
  starttls-stall        STARTTLS answered 220, then the handshake is never answered
  auth-none             no AUTH advertised
  auth-cram-md5         only AUTH CRAM-MD5 advertised
  auth-535              AUTH answered "535 5.7.8 Username and Password not accepted"
  auth-535-57139        AUTH answered Microsoft's "535 5.7.139 ... SmtpClientAuthentication is disabled for the Tenant"
  auth-534-579          AUTH answered Google's multi-line "534 5.7.9 Application-specific password required"
  auth-454              AUTH answered "454 4.7.0 Temporary authentication failure"
  xoauth2-challenge     AUTH XOAUTH2 answered with a 334 base64 JSON error challenge, then 535
  auth-close            the connection is closed on AUTH
  rcpt-550              RCPT TO answered 550 5.1.1
  data-552              the message answered "552 5.2.2 Mailbox full"
  data-451              the message answered "451 4.3.0 ..."
  data-stall            the message is never answered
  size-100             EHLO advertises SIZE 100; a larger MAIL FROM SIZE= or message is refused with 552 5.3.4
  http                  a real HTTP server (http.server) on the port: it waits for a request and says nothing
"""

import argparse
import asyncio
import base64
import datetime
import http.server
import json
import os
import signal
import ssl
import sys
import tempfile
import threading

HOST = "mail.example.test"

FINAL_AUTH = {
    "auth-535": "535 5.7.8 Username and Password not accepted\r\n",
    "auth-535-57139": "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
                      "Tenant.\r\n",
    "auth-534-579": "534-5.7.9 Application-specific password required.\r\n"
                    "534 5.7.9 Sign in with an app password. x1-20020a - gsmtp\r\n",
    "auth-454": "454 4.7.0 Temporary authentication failure\r\n",
}


class Events:
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()

    def emit(self, kind, **fields):
        if not self.path:
            return
        with self.lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"event": kind, **fields}) + "\n")


class Session:
    def __init__(self, args, events, ctx, reader, writer):
        self.args, self.events, self.ctx = args, events, ctx
        self.reader, self.writer = reader, writer
        self.fault = args.fault
        self.tls = args.tls == "implicit"

    async def send(self, text):
        self.writer.write(text.encode())
        await self.writer.drain()

    async def hold(self):
        """Says nothing until the client goes away."""
        try:
            while await self.reader.read(4096):
                pass
        except (ConnectionError, OSError):
            pass

    async def line(self):
        try:
            return await self.reader.readline()
        except (ConnectionError, OSError, ValueError):
            return b""

    async def greeting(self):
        """The greeting (or its fault); False when the session ends here."""
        f = self.fault
        if f == "tarpit":
            await self.hold()
            return False
        if f == "greeting-421":
            await self.send("421 4.3.2 %s Service not available, closing transmission channel\r\n" % HOST)
            return False
        if f == "greeting-554":
            await self.send("554 5.7.1 %s: your address is on a block list\r\n" % HOST)
            while (line := await self.line()) and not line.upper().startswith(b"QUIT"):
                await self.send("503 5.5.1 no SMTP service here\r\n")
            return False
        if f == "greeting-drip":
            for b in b"220-" + b"slow" * 10_000:
                await self.send(chr(b))
                await asyncio.sleep(1)
            return False
        if f == "ssh-banner":
            await self.send("SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13.5\r\n")
            await self.hold()
            return False
        if f == "greeting-1mb":
            line = "220-%s %s\r\n" % (HOST, "x" * 64)
            await self.send(line * (1_000_000 // len(line)))
        await self.send("220 %s ESMTP fault-peer\r\n" % HOST)
        return f != "close-after-greeting"

    def ehlo_lines(self):
        lines = [HOST]
        if self.fault == "size-100":
            lines.append("SIZE 100")
        lines.append("8BITMIME")
        if self.args.tls == "starttls" and not self.tls and self.fault != "no-starttls":
            lines.append("STARTTLS")
        if self.fault == "auth-cram-md5":
            lines.append("AUTH CRAM-MD5")
        elif self.fault != "auth-none":
            lines.append("AUTH PLAIN LOGIN XOAUTH2")
        return "".join("250%s%s\r\n" % ("-" if i < len(lines) - 1 else " ", l) for i, l in enumerate(lines))

    async def starttls(self):
        """False when the session ends here."""
        f = self.fault
        if f == "starttls-454":
            await self.send("454 4.7.0 TLS not available due to temporary reason\r\n")
            return True
        await self.send("220 2.0.0 Ready to start TLS\r\n")
        if f == "close-after-starttls":
            return False
        if f == "starttls-stall":
            await asyncio.sleep(3600)
            return False
        try:
            await self.writer.start_tls(self.ctx)
        except (ConnectionError, OSError, ssl.SSLError):
            return False
        self.tls = True
        self.events.emit("tls")
        return True

    async def sasl_response(self):
        line = await self.line()
        self.events.emit("sasl_response")
        return line

    async def auth(self, parts):
        """False when the session ends here."""
        f = self.fault
        mechanism = parts[1].upper() if len(parts) > 1 else ""
        if f == "auth-close":
            return False
        if mechanism == "LOGIN":
            await self.send("334 VXNlcm5hbWU6\r\n")
            await self.sasl_response()
            await self.send("334 UGFzc3dvcmQ6\r\n")
            await self.sasl_response()
        elif len(parts) < 3:
            await self.send("334 \r\n")
            await self.sasl_response()
        if mechanism == "XOAUTH2" and f == "xoauth2-challenge":
            err = json.dumps({"status": "400", "schemes": "Bearer", "scope": "https://mail.example.test/"})
            await self.send("334 %s\r\n" % base64.b64encode(err.encode()).decode())
            await self.sasl_response()
            await self.send("535 5.7.8 Username and Password not accepted\r\n")
            return True
        await self.send(FINAL_AUTH.get(f, "235 2.7.0 Authentication successful\r\n"))
        return True

    async def data(self):
        """False when the session ends here."""
        await self.send("354 End data with <CR><LF>.<CR><LF>\r\n")
        size = 0
        while (line := await self.line()) not in (b".\r\n", b".\n", b""):
            size += len(line)
        self.events.emit("message", bytes=size)
        f = self.fault
        if f == "data-stall":
            await self.hold()
            return False
        if f == "data-552":
            await self.send("552 5.2.2 <ops@example.com>: Mailbox full\r\n")
        elif f == "data-451":
            await self.send("451 4.3.0 Temporary lookup failure, try again later\r\n")
        elif f == "size-100" and size > 100:
            await self.send("552 5.3.4 Message size exceeds fixed maximum message size\r\n")
        else:
            await self.send("250 2.0.0 Ok: queued as FAULT1\r\n")
        return True

    async def command(self, line):
        """Answers one command; False when the session ends."""
        parts = line.decode("utf-8", "replace").strip().split(" ")
        verb = parts[0].upper()
        fields = {"verb": verb, "tls": self.tls}
        if verb == "AUTH" and len(parts) > 1:
            fields["mechanism"] = parts[1].upper()
        self.events.emit("command", **fields)
        f = self.fault
        if verb == "EHLO":
            if f == "ehlo-500":
                await self.send("500 5.5.2 Syntax error, command unrecognized\r\n")
            elif f == "ehlo-502":
                await self.send("502 5.5.1 Command not implemented\r\n")
            else:
                await self.send(self.ehlo_lines())
        elif verb == "HELO":
            await self.send("250 %s\r\n" % HOST)
        elif verb == "STARTTLS":
            return await self.starttls()
        elif verb == "AUTH":
            return await self.auth(parts)
        elif verb == "MAIL":
            sizes = [p for p in parts if p.upper().startswith("SIZE=")]
            if f == "size-100" and sizes and int(sizes[0][5:] or 0) > 100:
                await self.send("552 5.3.4 Message size exceeds fixed maximum message size\r\n")
            else:
                await self.send("250 2.1.0 Ok\r\n")
        elif verb == "RCPT":
            if f == "rcpt-550":
                await self.send("550 5.1.1 %s: Recipient address rejected: User unknown\r\n" % parts[1][3:])
            else:
                await self.send("250 2.1.5 Ok\r\n")
        elif verb == "DATA":
            return await self.data()
        elif verb == "QUIT":
            await self.send("221 2.0.0 Bye\r\n")
            return False
        elif verb in ("RSET", "NOOP"):
            await self.send("250 2.0.0 Ok\r\n")
        else:
            await self.send("502 5.5.2 Error: command not recognized\r\n")
        return True

    async def run(self):
        self.events.emit("connect")
        try:
            if await self.greeting():
                while (line := await self.line()) and await self.command(line):
                    pass
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                self.writer.close()
            except RuntimeError:  # the loop is closing (SIGTERM)
                pass


def make_context(args, out_dir):
    """A TLS server context with a fresh CA and a certificate as --cert asks; returns (context, CA path)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import testca

    day = datetime.timedelta(days=1)
    valid = {"expired": (-30 * day, -day), "not-yet-valid": (day, 30 * day)}.get(args.cert)
    names, ips = (("wrong.invalid",), ()) if args.cert == "wrong-name" else (("localhost",), ("127.0.0.1", "::1"))
    paths = testca.ensure(tempfile.mkdtemp(prefix="certs-", dir=out_dir), names=names, ips=ips, valid=valid)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(paths["cert"], paths["key"])
    ca = paths["ca"]
    if args.ca_out:
        with open(ca, "rb") as src, open(args.ca_out, "wb") as dst:
            dst.write(src.read())
        ca = os.path.abspath(args.ca_out)
    return ctx, ca


def ready(port, ca):
    sys.stdout.write(json.dumps({"port": port, "ca_pem_path": ca}) + "\n")
    sys.stdout.flush()


def serve_http(events):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=httpd.shutdown).start())
    events.emit("http")
    ready(httpd.server_address[1], None)
    httpd.serve_forever()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fault", default="ok")
    p.add_argument("--tls", choices=["none", "starttls", "implicit"], default="none")
    p.add_argument("--cert", choices=["ok", "expired", "not-yet-valid", "wrong-name"], default="ok")
    p.add_argument("--events")
    p.add_argument("--ca-out")
    args = p.parse_args()
    events = Events(args.events)
    if args.fault == "http":
        return serve_http(events)
    ctx, ca = None, None
    if args.tls != "none":
        out_dir = os.path.dirname(os.path.abspath(args.events)) if args.events else tempfile.mkdtemp()
        ctx, ca = make_context(args, out_dir)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.set_exception_handler(lambda _loop, _ctx: None)  # expected failures: no tracebacks in test output

    async def handle(reader, writer):
        await Session(args, events, ctx, reader, writer).run()

    server = loop.run_until_complete(asyncio.start_server(
        handle, host="127.0.0.1", port=0, ssl=ctx if args.tls == "implicit" else None, limit=1 << 20))
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    ready(server.sockets[0].getsockname()[1], ca)
    loop.run_until_complete(stop)
    server.close()
    loop.close()


if __name__ == "__main__":
    main()
