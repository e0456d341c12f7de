#!/usr/bin/env python3
"""Regenerate the project's interface catalogue from the specification data.

Reads ../shared/spec/interfaces.json (the spec as data) and writes
  src/catalog/catalog.json          what the gateway routes on (checked in, embedded in the binary)
  tests/fixtures/spec_examples.json the spec's request/response examples the tests replay

The project never reads ../shared at build or test time; run this only when the spec changes,
then review the diff.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SPEC = os.path.join(ROOT, "..", "shared", "spec", "interfaces.json")


def envelope(example):
    """The shape the box must use for answers it raises itself on this interface."""
    if not isinstance(example, dict):
        return "standard"
    keys = {k.strip() for k in example}
    if "status" in keys and "message" in keys:
        return "status"  # E6: {success, message, status}
    if "message" in keys and "msg" not in keys:
        return "message"  # E5: {success, message, data}
    return "standard"


# Facts the project adds to the spec's data (the spec states them in prose, not per interface).
# Appendix 4 (附四) gives 10002 the meaning "refund state unknown, retry with the same refund
# number" for the refund interfaces: a refund accepted into the buffer is answered 10002, other
# business calls 40004.
REFUND_PATHS = {
    "prefront/hospitalizationCosts/hisRefund",       # 13.2.1
    "prefront/todayRegister/todayRegisterRefound",   # 20.2.2
    "prefront/hospitalizationCosts/yyghRefund",      # 21.1.7
}
# Cloud -> HIS names whose answers carry whole documents as base64 although the spec files them
# as queries (the education material in 23.1.2 embeds its pictures): they get the larger answer
# limit, as file interfaces do.
DOCUMENT_QUERIES = {"hospital.interface.inhospitalEducation.getDetailById"}


def norm_path(p):
    return p.strip().lstrip("/") if p else None


def main():
    spec_path = sys.argv[1] if len(sys.argv) > 1 else SPEC
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    entries, examples = [], []
    for e in spec:
        entry = {
            "chapter": e["chapter"],
            "title": e["title_en"],
            "direction": e["direction"],
            "name": e["name"],
            "path": norm_path(e["http_path"]) if e["direction"] == "his_to_cloud" else None,
            "ws_method": e["ws_method"],
            "kind": e["kind"],
            "idempotency_key": e["idempotency_key"] or [],
            "envelope": envelope(e["response_example"]),
        }
        path = entry["path"]
        if path in REFUND_PATHS:
            entry["queued_code"] = "10002"
        if e["name"] in DOCUMENT_QUERIES or e["kind"] == "file":
            entry["carries_documents"] = True
        entries.append(entry)
        examples.append({
            "chapter": e["chapter"],
            "direction": e["direction"],
            "name": e["name"],
            "path": entry["path"],
            "request_example": e["request_example"],
            "response_example": e["response_example"],
        })
    out = os.path.join(ROOT, "src", "catalog", "catalog.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"source": "智慧区域微信公众号接口说明文档 1.6.68", "entries": entries},
                  f, ensure_ascii=False, indent=1)
        f.write("\n")
    fx = os.path.join(ROOT, "tests", "fixtures", "spec_examples.json")
    with open(fx, "w", encoding="utf-8") as f:
        json.dump(examples, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{len(entries)} entries -> {out}, {fx}")


if __name__ == "__main__":
    main()
