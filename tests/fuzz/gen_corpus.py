#!/usr/bin/env python3
"""Writes the checked-in seed corpora, tests/fuzz/corpus/<target>/.

Seeds are small, valid-ish examples of what each target parses, so the
fuzzer starts from the interesting shapes instead of from nothing. The files
are checked in; rerun this script (it is deterministic) after changing it:

    python3 tests/fuzz/gen_corpus.py
"""
import hashlib
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


# --- a minimal msgpack writer (ints, str, bin, nil, arrays) -------------

class Bin(bytes):
    pass


def mp(v):
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        if 0 <= v <= 0x7f:
            return bytes([v])
        if -32 <= v < 0:
            return struct.pack("b", v)
        if 0 <= v <= 0xff:
            return b"\xcc" + struct.pack(">B", v)
        if 0 <= v <= 0xffff:
            return b"\xcd" + struct.pack(">H", v)
        if 0 <= v <= 0xffffffff:
            return b"\xce" + struct.pack(">I", v)
        if v >= 0:
            return b"\xcf" + struct.pack(">Q", v)
        return b"\xd3" + struct.pack(">q", v)
    if isinstance(v, Bin):
        n = len(v)
        if n <= 0xff:
            return b"\xc4" + bytes([n]) + v
        return b"\xc5" + struct.pack(">H", n) + v
    if isinstance(v, str):
        b = v.encode()
        n = len(b)
        if n <= 31:
            return bytes([0xa0 | n]) + b
        if n <= 0xff:
            return b"\xd9" + bytes([n]) + b
        return b"\xda" + struct.pack(">H", n) + b
    if isinstance(v, list):
        n = len(v)
        head = bytes([0x90 | n]) if n <= 15 else b"\xdc" + struct.pack(">H", n)
        return head + b"".join(mp(x) for x in v)
    raise TypeError(v)


def msg(t, *fields, version=2, epoch=3):
    return mp([version, t, epoch] + list(fields))


JOB = json.dumps({"method": "GET", "headers": ["Authorization: ${TOKEN}"],
                  "timeout_ms": 30000, "connect_timeout_ms": 10000,
                  "max_attempts": 5, "max_throttled": 50,
                  "backoff_base_ms": 500, "backoff_max_ms": 30000,
                  "max_response_bytes": 1048576, "heartbeat_ms": 1000,
                  "lease_ms": 5000, "rate_limited": 1,
                  "token_slack_ms": 5}, separators=(",", ":"))

PROTO = {
    "hello": msg(1, "host:1234", "host", 1234, 16, epoch=0),
    "job": msg(2, JOB),
    "heartbeat": msg(3, 2, [0, 1, 0, 2]),
    "heartbeat_master": msg(3, 0, []),
    "token_req": msg(4, 8, 120, 3),
    "token_grant": msg(5, 128, 1732490000000000, [0, 2500, 5000, 7500]),
    "throttled": msg(6, 429, 2000),
    "bye": msg(7, [4, 0, 4, 9]),
    "reset": msg(8),
    "work": msg(9, 4, 7, "item-42", "http://127.0.0.1:8080/items/item-42",
                None, "fo-0123456789abcdef-fedcba9876543210"),
    "work_body": msg(9, 5, 0, "42", "http://h/x", Bin(b'{"id":"42"}'),
                     "fo-1-2"),
    "result_ok": msg(10, 4, 7, "item-42", 0, 200, 1, 0, 31, None,
                     Bin(b'{"ok":true}'), "host:1234"),
    "result_failed": msg(10, 4, 8, "item-43", 1, 500, 5, 2, 12,
                         "gave up after 5 attempts: HTTP 500", None, "w1"),
    "result_times": msg(10, 4, 9, "item-44", 0, 200, 2, 0, 40, None, None,
                        "w1", "fo-1-2", 1796464800123456, 1796464801433000),
    "done": msg(11),
    "pause": msg(12, 1500),
    "rateinfo": msg(13, 60, 1000, 5, -1),
    "ctl": msg(14, '{"cmd":"set","rate":["80/s"]}'),
    "ctl_reply": msg(15, '{"ok":true}'),
    "bad_version": msg(4, 8, 0, 0, version=1),
    "drain": msg(16),
    "multi": msg(17, [Bin(msg(8)), Bin(msg(9, 4, 7, "item-42", "http://h/x",
                                          None, "fo-1-2")), Bin(msg(11))]),
    "multi_nested": msg(17, [Bin(msg(17, []))]),
    "extra_fields": msg(4, 8, 0, 0, "extra", [1, 2]),
    "huge_count": b"\x93\x02\x03\xdd\xff\xff\xff\xff",
}

JSONL = {
    # byte 0: max_line selector; byte 1: piece-size seed; then the URL
    # template line, the body template line, and items.
    "basic": b"\x50\x07http://api/items/{id}?q={user.name}\n"
             b'{"id":"{id}","n":{n},"all":{*}}\n'
             b'{"id":"a1","n":1,"user":{"name":"x y"}}\n'
             b'{"id":2,"n":2.5,"user":{"name":"\\u00e9"}}\n'
             b'\n'
             b'   \n'
             b'[1,2,3]\n'
             b'not json\n'
             b'{"id":"no-user"}',
    "overlong": b"\x10\x01http://h/{id}\n{*}\n"
                b'{"id":"short"}\n'
                b'{"id":"this line is much longer than sixteen bytes"}\n'
                b'{"id":"s2"}\n',
    "braces": b"\x7f\x03http://h/{{literal}}/{a.b.c}/{}\n"
              b"}{ {x\n"
              b'{"a":{"b":{"c":[1,{"d":null}]}}}\n',
    "env": b"\x40\x09https://h/${FUZZ_TOKEN}/{id}\n$${A}${FUZZ_TOKEN\n"
           b'{"id":"\\u0000nul"}\n{"id":true}\n',
    "crlf": b"\x30\x05http://h/{id}\n\n"
            b'{"id":"1"}\r\n{"id":"2"}\r\n\xff\xfe\n',
    "deep": b"\xc8\x11http://h/{id}\n{*}\n" + b"[" * 300 + b"]" * 300 +
            b"\n" + b'{"id":' + b"[" * 50 + b"]" * 50 + b"}\n",
}

OPTIONS = {
    # byte 0: config mode (0 none, 1 "--config P" first, 2 "--config=P"
    # first, 3/4 the same last); config JSON up to the first NUL; then argv
    # split on NUL.
    "flags": b"\x00\x00--count\x007\x00--flag\x00--wait=250ms\x00--size\x00"
             b"64k\x00--header\x00A: b\x00--header\x00C: d\x00pos\x00--\x00"
             b"--after",
    "config": b"\x01" + json.dumps({"count": 9, "flag": True, "wait": "2m",
                                    "size": "1MiB", "header": ["X: 1", "Y: 2"],
                                    "name": "n", "neg": -4}).encode() +
              b"\x00--count\x0010",
    "config_eq": b"\x02" + json.dumps({"rate": "5/s", "size": 1048576,
                                       "wait": 1.5}).encode() + b"\x00",
    "bad_config": b"\x03{\"count\": [1,2], \"unknown\": 1\x00--no-flag",
    "not_object": b"\x04[1,2,3]\x00--help",
    "errors": b"\x00\x00--count\x00abc\x00--nope\x00-x\x00--no-flag=1\x00"
              b"--size",
    "version": b"\x00\x00--name\x00--help\x00--version",
}

RATE = [b"1000/min", b"20/s,1000/min", b"5/h", b"0/s", b"-5/min",
        b"1000/fortnight", b"abc", b"10000001/s", b"9223372036854775807/h",
        b"250ms", b"1.5s", b"2m", b"1h", b"64k", b"1MiB", b"0x10", b"1e3",
        b"debug", b"warning", b"json", b" 7", b"65533", b"-10", b".5",
        b"3/second", b"12/minute", b"1/hour"]

HEADERS = [b"Retry-After: 120\r\n", b"retry-after:   7  \r\n",
           b"Retry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\n",
           b"Retry-After: Fri, 31 Dec 9999 23:59:59 GMT\r\n",
           b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 0001\r\n"
           b"Content-Length: 0\r\n\r\n",
           b"Retry-After: 99999999999999999999\r\n",
           b"Retry-After: -1\r\n", b"Retry-After: soon\r\n",
           b"120", b"Thu, 01 Jan 1970 00:00:00 GMT"]

RATELIMIT = [b"RateLimit-Policy: 60;w=1, 1000;w=3600\r\n",
             b"RateLimit: limit=60, remaining=5, reset=1\r\n",
             b'RateLimit: "default";r=5;t=1\r\n',
             b'RateLimit-Policy: "burst";q=100;w=60\r\n',
             b"X-RateLimit-Limit: 5000\r\nX-RateLimit-Remaining: 4999\r\n"
             b"X-RateLimit-Reset: 1732490123\r\n",
             b"x-ratelimit-reset: 30\r\n",
             b"RateLimit-Reset: 2.5\r\nRateLimit-Limit: 10\r\n",
             b"RateLimit: limit=abc, remaining=\r\n",
             b"X-RateLimit-Limit 5000\r\n"]


# byte 0: 0 a --keep path, 1 an --ok-when condition; the text, NUL, a
# JSON document.
JPATH = {
    "pointer": b'\x00/a/b/0\x00{"a":{"b":[1]}}',
    "escapes": b'\x00/a~1b/c~0d\x00{"a/b":{"c~d":true}}',
    "dotted": b'\x00a.b.0\x00{"a":{"b":[1]}}',
    "cond": b'\x01status != error\x00{"status":"ok"}',
    "cond_quoted": b'\x01/status == "ok"\x00{"status":"ok"}',
    "cond_in": b'\x01data.state in [done, "ok", 3]\x00'
               b'{"data":{"state":"done"}}',
    "not_json": b'\x01x == 1\x00not json',
}


JSONW = [
    b'{"ok":true,"n":[1,2.5,-3],"s":"caf\xc3\xa9 \\u00e9 \\ud83d\\ude00"}',
    b'{\n  "pretty": 1\n}\n', b'[]', b'"text"', b'123456789012345678',
    b'1e5', b'"\\u0000"', b'"\\ud800"', b'bad \xff bytes', b'[[[[[]]]]]',
]


def write(target, seeds):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    items = seeds.items() if isinstance(seeds, dict) else \
        ((hashlib.sha1(s).hexdigest()[:12], s) for s in seeds)
    for name, data in items:
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


def main():
    write("fuzz_proto", PROTO)
    write("fuzz_jsonl_template", JSONL)
    write("fuzz_options", OPTIONS)
    write("fuzz_rate", RATE)
    write("fuzz_headers", HEADERS)
    write("fuzz_ratelimit", RATELIMIT)
    write("fuzz_jpath", JPATH)
    write("fuzz_jsonw", JSONW)


if __name__ == "__main__":
    main()
