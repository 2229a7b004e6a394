#!/usr/bin/env python3
"""Times `POST /recover` through the edge for an address that has an account
and for addresses that have none, alternating, on one kept-alive connection,
and prints both latency distributions and their ratio (docs/benchmarks.md).

The answer must not tell the two apart: the same page, after the same steps
(the code is issued and sent in the background). Run against `domicile up`
with request limits raised above the rounds (the script refuses a 429):

    python3 loadtest/recovery_timing.py --edge http://127.0.0.1:8080 \
        --known ada@example.de --rounds 400

Only the standard library; loopback only.
"""
import argparse
import http.client
import re
import statistics
import time
import urllib.parse

CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def field(html, name):
    m = re.search(r'name="%s" value="([^"]*)"' % re.escape(name), html)
    if not m:
        raise SystemExit("no %s field on the sign-in page" % name)
    return m.group(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--edge", default="http://127.0.0.1:8080")
    ap.add_argument("--known", required=True, help="an address that has an account")
    ap.add_argument("--rounds", type=int, default=400)
    ap.add_argument("--client", default="demo")
    ap.add_argument(
        "--fresh-unknown",
        action="store_true",
        help="a new unknown address each round (each costs the edge an index lookup its cache "
        "has not seen; by default one unknown address is reused, so both are cached alike)",
    )
    args = ap.parse_args()
    u = urllib.parse.urlparse(args.edge)
    if u.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("loopback only")
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=10)
    query = urllib.parse.urlencode({
        "client_id": args.client,
        "redirect_uri": "http://127.0.0.1/callback",
        "response_type": "code",
        "scope": "openid",
        "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
    })
    conn.request("GET", "/authorize?" + query)
    r = conn.getresponse()
    page = r.read().decode()
    if r.status != 200:
        raise SystemExit("sign-in page: %d" % r.status)
    cookie = "; ".join(
        c.split(";", 1)[0] for k, c in r.getheaders() if k.lower() == "set-cookie"
    )
    req, csrf = field(page, "req"), field(page, "csrf")
    times = {"known": [], "unknown": []}
    for i in range(args.rounds):
        unknown = "nobody-%d@example.de" % i if args.fresh_unknown else "nobody@example.de"
        order = [("known", args.known), ("unknown", unknown)]
        if i % 2:
            order.reverse()
        for kind, email in order:
            body = urllib.parse.urlencode({"req": req, "csrf": csrf, "email": email})
            start = time.perf_counter()
            conn.request("POST", "/recover", body=body, headers={
                "content-type": "application/x-www-form-urlencoded",
                "cookie": cookie,
            })
            r = conn.getresponse()
            r.read()
            elapsed = (time.perf_counter() - start) * 1000
            if r.status != 200:
                raise SystemExit("%s: %d (raise the [accounts] limits above --rounds)" % (kind, r.status))
            if i >= 10:  # warm-up
                times[kind].append(elapsed)

    def summary(v):
        v = sorted(v)
        q = lambda p: v[min(len(v) - 1, int(p * len(v)))]
        return statistics.median(v), q(0.9), q(0.99)

    k, n = summary(times["known"]), summary(times["unknown"])
    print("POST /recover through the edge, %d rounds (first 10 dropped), ms:" % args.rounds)
    print("  account exists:  p50 %.3f  p90 %.3f  p99 %.3f" % k)
    print("  no account:      p50 %.3f  p90 %.3f  p99 %.3f" % n)
    print("  ratio exists/none: p50 %.3f  p90 %.3f" % (k[0] / n[0], k[1] / n[1]))


if __name__ == "__main__":
    main()
