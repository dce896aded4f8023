#!/usr/bin/python3
"""Mints HS256 tokens (tests, the demo): jwt.py SECRET 'CLAIMS_JSON' [ALG].

HS256 only (what the tests configure); ALG=none builds an unsigned token, ALG=HS512 one
signed with another algorithm. A claim "exp": "+N" becomes now + N seconds.
"""
import base64, hashlib, hmac, json, sys, time


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(secret: str, claims: dict, alg: str = "HS256") -> str:
    claims = dict(claims)
    if isinstance(claims.get("exp"), str) and claims["exp"].startswith(("+", "-")):
        claims["exp"] = int(time.time()) + int(claims["exp"])
    head = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    msg = f"{head}.{body}".encode()
    if alg == "none":
        return f"{head}.{body}."
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[alg]
    return f"{head}.{body}.{b64(hmac.new(secret.encode(), msg, digest).digest())}"


if __name__ == "__main__":
    print(mint(sys.argv[1], json.loads(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "HS256"))
