#!/usr/bin/env python3
"""Cross-check vectors for the iso8583 crate, made by an independent library (pyiso8583).

Test-only. Reads the field table from iso8583/dialects/ascii.toml (the `mastercard` dialect has
the same table), builds a pyiso8583 spec for each built-in dialect (ASCII, and EBCDIC cp037 for
`mastercard`), encodes seeded random valid messages with pyiso8583 and writes, one JSON object per
line: {"dialect", "hex", "mti", "fields"} with character fields as text and `b` fields as
uppercase hex. Deterministic: the same pyiso8583 version writes the same files.

Run through run.sh, which makes the venv outside the repo.
"""
import json
import random
import sys
import tomllib
from pathlib import Path

import iso8583

ROOT = Path(__file__).resolve().parents[2]
TABLE = tomllib.loads((ROOT / "iso8583/dialects/ascii.toml").read_text())["fields"]
OUT = ROOT / "iso8583/tests/vectors"
LEN_TYPE = {"fixed": 0, "LLVAR": 2, "LLLVAR": 3}


def spec_for(enc):
    spec = {
        "h": {"data_enc": enc, "len_enc": "ascii", "len_type": 0, "max_len": 0, "desc": "header"},
        "t": {"data_enc": enc, "len_enc": "ascii", "len_type": 0, "max_len": 4, "desc": "MTI"},
        "p": {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 8, "desc": "primary bitmap"},
        "1": {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 8, "desc": "secondary bitmap"},
    }
    for n, f in TABLE.items():
        spec[n] = {
            "data_enc": "b" if f["format"] == "b" else enc,
            "len_enc": enc,
            "len_type": LEN_TYPE[f["length"]],
            "max_len": f["max"],
            "desc": f["name"],
        }
    return spec


ALPHABET = {
    "n": "0123456789",
    "an": "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz ",
    "ans": "".join(chr(c) for c in range(0x20, 0x7F)),
    "z": "0123456789:;<=>?",
}


def value(rng, f):
    fixed = f["length"] == "fixed"
    n = f["max"] if fixed else rng.randint(0, min(f["max"], 60))
    if f["format"] == "b":
        return bytes(rng.randrange(256) for _ in range(n)).hex().upper()
    if f["format"] == "x+n":
        return rng.choice("CD") + "".join(rng.choice("0123456789") for _ in range(n - 1))
    return "".join(rng.choice(ALPHABET[f["format"]]) for _ in range(n))


def realistic(rng):
    """A few fixed shapes like the benchmark mix, with random content."""
    pan = "5413" + "".join(rng.choice("0123456789") for _ in range(12))
    base = {"2": pan, "3": "000000", "4": "%012d" % rng.randrange(10**7), "7": "1122143015",
            "11": "%06d" % rng.randrange(10**6), "22": "051", "32": "123456", "33": "654321",
            "37": "532614004711", "41": "TERM0001", "42": "MERCHANT0000001",
            "43": "SUPERMARCHE DU COIN    PARIS        FRA".ljust(40), "49": "978", "63": "MCC123456789"}
    chip = dict(base, **{"55": "9F2608" + bytes(rng.randrange(256) for _ in range(8)).hex().upper() + "9F360200" + "%02X" % rng.randrange(256)})
    mag = dict(base, **{"22": "021", "35": pan + "=28122011234567890", "52": bytes(rng.randrange(256) for _ in range(8)).hex().upper()})
    ecom = dict(base, **{"22": "812", "48": "T4203210" + "9203123"})
    rev = {"2": pan, "4": base["4"], "11": base["11"], "39": "17",
           "90": "0100" + base["11"] + "1122143015" + "00000123456" + "00000654321",
           "95": "%012d" % 5000 * 3 + "000000"}
    echo = {"7": "1122143000", "11": "000042", "33": "654321", "70": "301"}
    return [("0100", chip), ("0100", mag), ("0100", ecom), ("0400", rev), ("0800", echo)]


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 150
    OUT.mkdir(parents=True, exist_ok=True)
    for dialect, enc in (("ascii", "ascii"), ("mastercard", "cp037")):
        spec = spec_for(enc)
        rng = random.Random(8583)
        messages = realistic(rng)
        for _ in range(count):
            # Bit 65 means a tertiary bitmap to pyiso8583 4.x; the crate reads it as field 65 (b 8).
            chosen = sorted(rng.sample([n for n in range(2, 129) if n != 65], rng.randint(1, 20)))
            fields = {str(n): value(rng, TABLE[str(n)]) for n in chosen}
            messages.append(("%04d" % rng.randrange(10000), fields))
        lines = []
        for mti, fields in messages:
            doc = {"t": mti, **fields}
            raw, _ = iso8583.encode(doc, spec)
            decoded, _ = iso8583.decode(bytes(raw), spec)
            for k, v in fields.items():
                assert decoded[k] == v, (dialect, k, decoded[k], v)
            ordered = {k: fields[k] for k in sorted(fields, key=int)}
            lines.append(json.dumps({"dialect": dialect, "hex": bytes(raw).hex().upper(),
                                     "mti": mti, "fields": ordered}, ensure_ascii=True))
        (OUT / f"{dialect}.jsonl").write_text("\n".join(lines) + "\n")
        print(f"{dialect}: {len(lines)} vectors (pyiso8583 {iso8583.__version__})")


if __name__ == "__main__":
    main()
