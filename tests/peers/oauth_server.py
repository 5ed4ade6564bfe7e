"""OAuth 2.0 authorization server test peer (Authlib), HTTPS on 127.0.0.1.

    python oauth_server.py --state DIR --clients clients.json [--expires-in 3600] [--port 0]

Grants: client_credentials, refresh_token, urn:ietf:params:oauth:grant-type:jwt-bearer (RFC 7523, assertions
verified against each client's public key). Every client has ONE strict token_endpoint_auth_method
(client_secret_post or client_secret_basic): the other method is refused with invalid_client.

Endpoints:
  POST /token            token endpoint
  POST /introspect       RFC 7662 introspection (client_secret_basic of a client with "introspect": true)
  ANY  /redirect         answers 302 to /redirect-target on this server (tests that clients do not follow it)
  ANY  /redirect-target  would hand out a token (it must never be reached by a client under test)
  POST /huge             a 200 KB JSON answer (tests the client's body cap)
  POST /fault/NAME       a broken token endpoint (tests/faults.rs): 500 (plain-text 500), 429 (429 with
                         Retry-After: 30), html (a 502 HTML error page), 20mb (a 200 answer of 20 MB, streamed),
                         invalid-json, no-access-token, mac (token_type "mac"); each logged as {"event": "fault"}

clients.json: {"clients": [{
    "client_id": "...", "client_secret": "...",           # secret optional for JWT-bearer-only clients
    "token_endpoint_auth_method": "client_secret_post" | "client_secret_basic",
    "grant_types": ["client_credentials", "refresh_token", "urn:ietf:params:oauth:grant-type:jwt-bearer"],
    "scope": "space separated allowed scopes",            # optional; empty = any
    "user": "alerts@example.test",                         # mailbox the token is for (introspection username)
    "expires_in": 3600,                                    # optional; default --expires-in
    "refresh_tokens": ["..."],                             # valid refresh tokens of this client
    "subjects": ["alerts@example.test"],                   # JWT bearer: allowed `sub` values
    "jwt_key": true,                                       # JWT bearer: generate an RSA key pair for it
    "introspect": true                                     # may call /introspect
}]}

The peer writes into --state: ca.pem (test CA), server.pem/server.key, for jwt_key clients
keys/<client_id>.pem (PKCS#8 private key) and keys/<client_id>.json (Google-style service-account JSON), and
events.jsonl: one JSON object per line, {"event": "http", "method", "path", "status"} for every request and
{"event": "token", "grant", "client", "result": "ok"|"error", "error", "status"} for every token request, and
{"event": "introspect", "client", "active", "username"}. Never a secret, assertion or token.

Ready line on stdout (exactly one line, then the server runs until killed):
  {"ready": true, "port": N, "url": "https://127.0.0.1:N", "token_url": ".../token",
   "introspection_url": ".../introspect", "redirect_url": ".../redirect", "ca": "/abs/ca.pem",
   "events": "/abs/events.jsonl", "keys": {"<client_id>": {"pem": "/abs/..pem", "service_account": "/abs/..json"}}}
"""

import argparse
import base64
import json
import logging
import os
import secrets
import ssl
import sys
import threading
import time

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin, grants
from authlib.oauth2.rfc6749.util import scope_to_list, list_to_scope
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7523 import JWTBearerGrant as _JWTBearerGrant
from authlib.oauth2.rfc7662 import IntrospectionEndpoint as _IntrospectionEndpoint
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, Response, request
from joserfc.jwk import RSAKey
from werkzeug.serving import make_server

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testca  # noqa: E402

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"

_events_lock = threading.Lock()
EVENTS_PATH = None


def event(**fields):
    fields.setdefault("time", round(time.time(), 3))
    line = json.dumps(fields, sort_keys=True)
    with _events_lock:
        with open(EVENTS_PATH, "a") as f:
            f.write(line + "\n")
            f.flush()


class Client(ClientMixin):
    def __init__(self, conf, default_expires_in):
        self.client_id = conf["client_id"]
        self.client_secret = conf.get("client_secret") or ""
        self.auth_method = conf.get("token_endpoint_auth_method", "client_secret_basic")
        self.grant_types = conf.get("grant_types", ["client_credentials"])
        self.scope = conf.get("scope", "")
        self.user = conf.get("user", "")
        self.expires_in = int(conf.get("expires_in", default_expires_in))
        self.refresh_tokens = set(conf.get("refresh_tokens", []))
        self.subjects = set(conf.get("subjects", []))
        self.introspect = bool(conf.get("introspect", False))
        self.public_key = None  # joserfc RSAKey for JWT bearer

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return None

    def get_allowed_scope(self, scope):
        if not scope:
            return ""
        if not self.scope:
            return scope
        allowed = set(scope_to_list(self.scope))
        return list_to_scope([s for s in scope_to_list(scope) if s in allowed])

    def check_redirect_uri(self, redirect_uri):
        return False

    def check_client_secret(self, client_secret):
        return bool(self.client_secret) and secrets.compare_digest(self.client_secret, client_secret)

    def check_endpoint_auth_method(self, method, endpoint):
        if endpoint == "token":
            return method == self.auth_method  # strict: exactly the configured method
        # introspection: resource servers authenticate with HTTP Basic
        return method == "client_secret_basic" and self.introspect

    def check_response_type(self, response_type):
        return False

    def check_grant_type(self, grant_type):
        return grant_type in self.grant_types


class Token(TokenMixin):
    def __init__(self, client, user, scope, expires_in, access_token, refresh_token=None):
        self.client = client
        self.user = user
        self.scope = scope or ""
        self.expires_in = expires_in
        self.issued_at = time.time()
        self.access_token = access_token
        self.refresh_token = refresh_token
        self.revoked = False

    def check_client(self, client):
        return client.client_id == self.client.client_id

    def get_scope(self):
        return self.scope

    def get_expires_in(self):
        return self.expires_in

    def is_expired(self):
        return time.time() >= self.issued_at + self.expires_in

    def is_revoked(self):
        return self.revoked

    def get_user(self):
        return self.user

    def get_client(self):
        return self.client


class Store:
    def __init__(self):
        self.clients = {}
        self.tokens = {}  # access token -> Token
        self.lock = threading.Lock()


STORE = Store()


def query_client(client_id):
    return STORE.clients.get(client_id)


def save_token(token, req):
    client = req.client
    user = req.user or client.user
    with STORE.lock:
        STORE.tokens[token["access_token"]] = Token(
            client, user, token.get("scope"), token.get("expires_in", client.expires_in), token["access_token"]
        )


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
    INCLUDE_NEW_REFRESH_TOKEN = False

    def authenticate_refresh_token(self, refresh_token):
        for client in STORE.clients.values():
            if refresh_token in client.refresh_tokens:
                return Token(client, client.user, client.scope, 10**9, None, refresh_token)
        return None

    def authenticate_user(self, refresh_token):
        return refresh_token.user

    def revoke_old_credential(self, refresh_token):
        pass  # refresh tokens stay valid (like Microsoft / Google without rotation)


class JWTBearerGrant(_JWTBearerGrant):
    AUDIENCES = []

    def resolve_issuer_client(self, issuer):
        return STORE.clients.get(issuer)

    def resolve_client_public_key(self, client):
        return client.public_key

    def authenticate_user(self, subject):
        return subject

    def has_granted_permission(self, client, user):
        return user in client.subjects

    def get_audiences(self):
        return list(self.AUDIENCES)


class IntrospectionEndpoint(_IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic"]

    def query_token(self, token_string, token_type_hint):
        with STORE.lock:
            return STORE.tokens.get(token_string)

    def check_permission(self, token, client, req):
        return client.introspect

    def introspect_token(self, token):
        return {
            "active": True,
            "client_id": token.client.client_id,
            "token_type": "Bearer",
            "username": token.user,
            "email": token.user,
            "sub": token.user,
            "scope": token.scope,
            "exp": int(token.issued_at + token.expires_in),
            "iat": int(token.issued_at),
        }


def basic_user(header):
    """The client id of an Authorization: Basic header (never the password)."""
    try:
        kind, b64 = header.split(" ", 1)
        if kind.lower() != "basic":
            return None
        from urllib.parse import unquote

        return unquote(base64.b64decode(b64).decode().split(":", 1)[0])
    except Exception:
        return None


def assertion_issuer(assertion):
    """The unverified `iss` of a JWT assertion (for the events file only; never the assertion itself)."""
    try:
        payload = assertion.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        iss = json.loads(base64.urlsafe_b64decode(payload)).get("iss")
        return iss if isinstance(iss, str) else None
    except Exception:
        return None


def create_app(default_expires_in):
    app = Flask(__name__)
    server = AuthorizationServer(app, query_client=query_client, save_token=save_token)

    def expires_generator(client, grant_type):
        return client.expires_in

    server.register_token_generator("default", BearerTokenGenerator(
        lambda **kw: secrets.token_urlsafe(32), None, expires_generator))
    server.register_grant(ClientCredentialsGrant)
    server.register_grant(RefreshTokenGrant)
    server.register_grant(JWTBearerGrant)
    server.register_endpoint(IntrospectionEndpoint)

    def issue():
        grant = request.form.get("grant_type", "")
        client = request.form.get("client_id") or basic_user(request.headers.get("Authorization", ""))
        if not client and grant == JWT_GRANT:
            client = assertion_issuer(request.form.get("assertion", ""))
        resp = server.create_token_response()
        result = {"event": "token", "path": request.path, "grant": grant, "status": resp.status_code}
        try:
            body = json.loads(resp.get_data())
        except ValueError:
            body = {}
        if resp.status_code == 200:
            result["result"] = "ok"
            tok = STORE.tokens.get(body.get("access_token"))
            if tok is not None:
                client = tok.client.client_id
            result["expires_in"] = body.get("expires_in")
        else:
            result["result"] = "error"
            result["error"] = body.get("error")
        result["client"] = client
        event(**result)
        return resp

    @app.post("/token")
    def token():
        return issue()

    @app.route("/redirect", methods=["GET", "POST"])
    def redirect():
        port = request.host.rsplit(":", 1)[-1]
        return Response("", status=302, headers={"Location": f"https://127.0.0.1:{port}/redirect-target"})

    @app.route("/redirect-target", methods=["GET", "POST"])
    def redirect_target():
        return issue()

    @app.post("/huge")
    def huge():
        # a JSON answer far larger than any token answer (clients must cap what they read)
        return Response(json.dumps({"access_token": "x" * 200_000, "token_type": "Bearer"}),
                        status=200, content_type="application/json")

    @app.post("/hang")
    def hang():
        # accepts the request and never answers (until the server stops): clients must bound their wait
        event(event="hang", path=request.path)
        threading.Event().wait(600)
        return Response("", status=504)

    @app.post("/fault/<name>")
    def fault(name):
        event(event="fault", name=name)
        json_type = "application/json"
        if name == "500":
            return Response("Internal Server Error", status=500, content_type="text/plain")
        if name == "429":
            body = json.dumps({"error": "temporarily_unavailable", "error_description": "too many requests"})
            return Response(body, status=429, content_type=json_type, headers={"Retry-After": "30"})
        if name == "html":
            page = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
            return Response(page, status=502, content_type="text/html")
        if name == "20mb":
            chunk = "x" * 65536
            def body():
                yield '{"access_token": "'
                for _ in range(20 * 16):
                    yield chunk
                yield '", "token_type": "Bearer"}'
            return Response(body(), status=200, content_type=json_type)
        if name == "invalid-json":
            return Response('{"access_token": "abc", "token_type": ', status=200, content_type=json_type)
        if name == "no-access-token":
            return Response(json.dumps({"token_type": "Bearer", "expires_in": 3600}), status=200,
                            content_type=json_type)
        if name == "mac":
            return Response(json.dumps({"access_token": secrets.token_urlsafe(32), "token_type": "mac",
                                        "expires_in": 3600}), status=200, content_type=json_type)
        return Response("unknown fault", status=404)

    @app.post("/hostile")
    def hostile():
        # an error answer written to attack whoever displays it: ANSI escapes, CR/LF, bidi overrides,
        # zero-width characters, the client secret echoed split by a control character, ~60 KB of text
        secret = request.form.get("client_secret", "")
        split = secret[:3] + "\x01" + secret[3:]
        desc = ("\x1b[2J\x1b[31mALERT\x1b[0m\r\nInjected: line\u202eevil\u202c \u2066iso\u2069 zero\u200bwidth "
                "\ufeff secret=" + split + " " + "A" * 60_000)
        return Response(json.dumps({"error": "invalid_client\x1b[0m\u202e", "error_description": desc}),
                        status=401, content_type="application/json")

    @app.post("/introspect")
    def introspect():
        resp = server.create_endpoint_response(IntrospectionEndpoint.ENDPOINT_NAME)
        try:
            body = json.loads(resp.get_data())
        except ValueError:
            body = {}
        event(event="introspect", client=basic_user(request.headers.get("Authorization", "")),
              status=resp.status_code, active=body.get("active"), username=body.get("username"))
        return resp

    @app.after_request
    def log_request(resp):
        event(event="http", method=request.method, path=request.path, status=resp.status_code)
        return resp

    return app


def main():
    global EVENTS_PATH
    p = argparse.ArgumentParser(description="OAuth 2.0 authorization server test peer")
    p.add_argument("--state", required=True, help="directory for CA, keys and events.jsonl")
    p.add_argument("--clients", required=True, help="clients JSON file")
    p.add_argument("--expires-in", type=int, default=3600, help="default token lifetime in seconds")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--ca-dir", help="reuse the test CA in this directory (default: --state)")
    a = p.parse_args()

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    state = os.path.abspath(a.state)
    os.makedirs(os.path.join(state, "keys"), exist_ok=True)
    EVENTS_PATH = os.path.join(state, "events.jsonl")
    open(EVENTS_PATH, "a").close()
    ca = testca.ensure(os.path.abspath(a.ca_dir or state))

    with open(a.clients) as f:
        conf = json.load(f)
    keys = {}
    for c in conf.get("clients", []):
        client = Client(c, a.expires_in)
        if c.get("jwt_key"):
            priv = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = priv.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()
            pem_path = os.path.join(state, "keys", f"{client.client_id}.pem")
            sa_path = os.path.join(state, "keys", f"{client.client_id}.json")
            for path, data in ((pem_path, pem), (sa_path, json.dumps({
                "type": "service_account", "client_email": client.client_id, "private_key_id": "test",
                "private_key": pem, "client_id": client.client_id}))):
                with open(path, "w") as f:
                    f.write(data)
                os.chmod(path, 0o600)
            pub = priv.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
            client.public_key = RSAKey.import_key(pub)
            keys[client.client_id] = {"pem": pem_path, "service_account": sa_path}
        elif c.get("public_key_pem"):
            client.public_key = RSAKey.import_key(c["public_key_pem"])
        STORE.clients[client.client_id] = client

    app = create_app(a.expires_in)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(ca["cert"], ca["key"])
    httpd = make_server("127.0.0.1", a.port, app, threaded=True, ssl_context=ctx)
    port = httpd.server_port
    base = f"https://127.0.0.1:{port}"
    JWTBearerGrant.AUDIENCES = [f"{base}/token", f"https://localhost:{port}/token"]
    print(json.dumps({
        "ready": True, "port": port, "url": base, "token_url": f"{base}/token",
        "introspection_url": f"{base}/introspect", "redirect_url": f"{base}/redirect",
        "ca": ca["ca"], "events": EVENTS_PATH, "keys": keys,
    }), flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
