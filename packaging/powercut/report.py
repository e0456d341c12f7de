#!/usr/bin/env python3
"""The power-cut test's verdict: compares what the box acknowledged with what the cloud recorded.

    report.py --acked ACKED --delivered DELIVERED.jsonl --cuts N --seed S [--lost-out FILE]
              CONSOLE.log...

ACKED: lines "seq queued-id" written by load.py (every cut appends to it). DELIVERED: the
recorder's JSON lines. CONSOLE: the guest's serial output, one file per boot.

Prints one summary line:
    powercut: cuts=N acked=A delivered=D lost=L duplicates=U ... sled_conf_warnings=W seed=S
and, before it, the details worth a look (lost seqs, message ids reused for different bodies,
deliveries out of the callers' order, warnings and errors from the guest's log). Exits 1 when an
acknowledged seq was never delivered (lost > 0), else 0.

seq layout (load.py): seq = cut*1000000 + caller*100000 + i, so seq // 100000 names one caller
of one cut, whose calls were made one after another.
"""

import argparse
import json
import re
import sys
from collections import Counter, defaultdict

SLED_CONF = "empty/corrupt configuration file found"
SLED_SNAPSHOT = "empty/corrupt snapshot file found"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Warnings every boot of this setup prints, and the per-call lines (a queued call is logged at
# WARN): not worth listing.
EXPECTED = (
    " call direction=",
    "plain HTTP",
    "plain http://",
    "link is down",
)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--acked", required=True)
    ap.add_argument("--delivered", required=True)
    ap.add_argument("--cuts", type=int, required=True)
    ap.add_argument("--seed", required=True)
    ap.add_argument("--lost-out")
    ap.add_argument("consoles", nargs="*")
    args = ap.parse_args()

    acked = {}
    try:
        with open(args.acked) as f:
            for line in f:
                parts = line.split()
                if parts:
                    acked[int(parts[0])] = parts[1] if len(parts) > 1 else ""
    except FileNotFoundError:
        pass

    deliveries = []  # (seq, id) in arrival order
    others = 0
    try:
        with open(args.delivered) as f:
            for line in f:
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                if r.get("seq") is None:
                    others += 1
                    continue
                deliveries.append((r["seq"], r.get("id")))
    except FileNotFoundError:
        pass

    count = Counter(s for s, _ in deliveries)
    delivered = set(count)
    lost = sorted(s for s in acked if s not in delivered)
    duplicates = sum(n - 1 for n in count.values())
    unacked_delivered = sum(1 for s in delivered if s not in acked)

    # X-Prefront-Message-Id: one id per message, never reused for another message.
    seqs_of_id = defaultdict(set)
    ids_of_seq = defaultdict(set)
    no_id = 0
    for s, i in deliveries:
        if i is None:
            no_id += 1
            continue
        seqs_of_id[i].add(s)
        ids_of_seq[s].add(i)
    ids_reused = {i: sorted(v) for i, v in seqs_of_id.items() if len(v) > 1}
    seqs_many_ids = {s: sorted(v) for s, v in ids_of_seq.items() if len(v) > 1}

    # Order: first deliveries of one caller come in its order; cuts come one after another.
    seen = set()
    last_of_caller = {}
    last_cut = -1
    out_of_order = 0
    cut_regressions = 0
    for s, _ in deliveries:
        if s in seen:
            continue
        seen.add(s)
        caller = s // 100000
        if last_of_caller.get(caller, -1) > s:
            out_of_order += 1
        last_of_caller[caller] = s
        cut = s // 1000000
        if cut < last_cut:
            cut_regressions += 1
        last_cut = max(last_cut, cut)

    # The guest's log.
    conf_warnings = snapshot_warnings = panics = moved_aside = salvages = box_lost = 0
    notable = Counter()
    for path in args.consoles:
        try:
            with open(path, errors="replace") as f:
                for line in f:
                    line = ANSI.sub("", line).rstrip("\r\n")
                    if SLED_CONF in line:
                        conf_warnings += 1
                    if SLED_SNAPSHOT in line:
                        snapshot_warnings += 1
                    if "panicked" in line:
                        panics += 1
                    if "moved aside" in line:
                        moved_aside += 1
                    if "damaged store salvaged" in line:
                        # The box's own account of a salvage at start: lost=N records it knows
                        # it acknowledged and could not find intact.
                        salvages += 1
                        m = re.search(r"\blost=(\d+)", line)
                        box_lost += int(m.group(1)) if m else 0
                    if any(e in line for e in EXPECTED):
                        continue
                    if re.search(r"\b(WARN|ERROR)\b", line) or "powercut: " in line and (
                        "FAIL" in line or "failed" in line
                    ):
                        # Strip the timestamp so that repeats group together.
                        key = re.sub(r"^\S*\d{4}-\d\d-\d\dT\S+\s+", "", line)
                        key = re.sub(r"\b(id|seq|request_id)=\S+", r"\1=…", key)
                        notable[key[:200]] += 1
        except FileNotFoundError:
            pass

    by_cut = Counter(s // 1000000 for s in acked)
    print(
        "powercut: acked per cut: "
        + (", ".join(f"cut {c}: {by_cut[c]}" for c in sorted(by_cut)) or "none")
    )
    if notable:
        print("powercut: warnings and errors in the guest's log (count × line):")
        for line, n in notable.most_common(25):
            print(f"  {n:5} × {line}")
    if lost:
        print(f"powercut: LOST (acknowledged, never delivered): {len(lost)}; first 20: {lost[:20]}")
        lost_by_cut = Counter(s // 1000000 for s in lost)
        print("powercut: lost per cut: " + ", ".join(f"cut {c}: {n}" for c, n in sorted(lost_by_cut.items())))
        if args.lost_out:
            with open(args.lost_out, "w") as f:
                for s in lost:
                    f.write(f"{s} {acked[s]}\n")
            print(f"powercut: lost seqs with their X-Prefront-Queued ids in {args.lost_out}")
    if ids_reused:
        first = list(ids_reused.items())[:5]
        print(f"powercut: WARN: {len(ids_reused)} X-Prefront-Message-Id values were used for different messages: {first}")
    if seqs_many_ids:
        first = list(seqs_many_ids.items())[:5]
        print(f"powercut: WARN: {len(seqs_many_ids)} messages were delivered under several ids: {first}")
    if no_id:
        print(f"powercut: WARN: {no_id} deliveries without X-Prefront-Message-Id")
    if out_of_order or cut_regressions:
        print(f"powercut: WARN: first deliveries out of order: {out_of_order} within a caller, {cut_regressions} across cuts")
    if others:
        print(f"powercut: note: {others} POSTs to the recorder without a seq")

    print(
        f"powercut: cuts={args.cuts} acked={len(acked)} delivered={len(delivered & set(acked))}"
        f" lost={len(lost)} duplicates={duplicates} delivered_unacked={unacked_delivered}"
        f" out_of_order={out_of_order + cut_regressions} ids_reused={len(ids_reused)}"
        f" sled_conf_warnings={conf_warnings} sled_snapshot_warnings={snapshot_warnings}"
        f" panics={panics} moved_aside={moved_aside} salvages={salvages} box_counted_lost={box_lost}"
        f" seed={args.seed}"
    )
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
