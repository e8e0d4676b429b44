#!/usr/bin/env python3
"""Where one process' instructions per task go, from the callgrind files seppo-bench keeps.

    build-bench/bench/seppo-bench --only m --keep-callgrind /tmp/cg
    bench/profile.py /tmp/cg broker        # or relay, client, worker; --top 40, --exclusive

Each function's cost is the difference between the pass of 2N tasks and the pass of N tasks,
divided by N, so that start-up and shutdown cancel out, as for seppo-bench's (m) rows. Prints a
Markdown table: instructions per task, inclusive (the function and all it calls) by default,
and the share of the process' total per task.
"""
import argparse
import pathlib
import re
import subprocess
import sys

# Exclusive costs summed by kind (first match wins), for --groups: what point 2 of issue 16
# would remove.
GROUPS = [
    ("allocation (malloc/free, new/delete)",
     r"^(malloc|free|cfree|calloc|realloc|_int_\w+|malloc_consolidate|unlink_chunk|tcache\w*|"
     r"__libc_(malloc|free|calloc)|operator (new|delete))"),
    ("memcpy/memcmp/memmove/strlen", r"^__(mem|str|wmem)\w*"),
    ("msgpack codec (msgpack::, seppo::wire::, unpack_untrusted)",
     r"msgpack::|seppo::wire::|unpack_untrusted"),
    ("std::map / std::unordered_map / set (tree and hash)", r"_Rb_tree|_Hashtable|_Hash_bytes|_Prime_rehash"),
    ("std::string (construct, assign, compare)", r"basic_string|char_traits"),
    ("libc syscall wrappers and clocks",
     r"^(__libc_\w+|__GI_\w+|__poll|poll|ppoll|epoll_\w+|recv\w*|send\w*|read|write|__read|"
     r"__write|clock_gettime|__clock_gettime\w*|syscall|__futex\w*|pthread_\w+|__pthread_\w+|"
     r"eventfd\w*|getpid|__getpid)\b"),
    ("libzmq (no symbols in Debian's build)", r"\(libzmq\.so"),
    ("seppo's own code", r"seppo::"),
    ("other libstdc++", r"\(libstdc\+\+"),
    ("other libc", r"\(libc\.so"),
    ("other", r""),
]

LINE = re.compile(r"^\s*([0-9,]+)\s+\([ 0-9.]+%\)\s+(?:\*\s+)?(.*)$")


def grouped_name(name):
    """The name a kind is matched on: the function without its parameter list (a seppo function
    taking a std::string is seppo's code, not std::string's), then its object ("(libc.so.6)")."""
    fn, lib = re.match(r"^(.*?)((?: \([^()]*\))?)$", name).groups()
    fn = fn.replace("(anonymous namespace)", "anonymous").replace("operator()", "operator")
    return fn.split("(", 1)[0] + lib


def costs(path, inclusive):
    """function -> Ir in one callgrind file, and the program's total."""
    out = subprocess.run(
        ["callgrind_annotate", "--threshold=100", "--auto=no",
         "--inclusive=" + ("yes" if inclusive else "no"), str(path)],
        check=True, capture_output=True, text=True, timeout=600).stdout
    table, total = {}, None
    for line in out.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        n = int(m.group(1).replace(",", ""))
        name = m.group(2).strip()
        if name == "PROGRAM TOTALS":
            total = n
            continue
        # "file:function [object]": the object says which library; the file adds little.
        obj = re.search(r"\[(.*)\]$", name)
        fn = re.sub(r"\s*\[.*\]$", "", name)
        fn = fn.split(":", 1)[1] if ":" in fn and not fn.startswith("(") else fn
        lib = pathlib.Path(obj.group(1)).name if obj else "?"
        key = f"{fn} ({lib})"
        table[key] = table.get(key, 0) + n
    return table, total


# Calls counted by --calls: the ZeroMQ API and the libc functions that enter the kernel.
CALLED = re.compile(
    r"^(zmq_(msg_send|msg_recv|poll|msg_init\w*|msg_close|getsockopt)|"
    r"__libc_(send|recv|sendmsg|recvmsg|read|write)|send|recv|sendto|recvfrom|__poll|poll|"
    r"epoll_wait|write|read|__write|__read|eventfd_write|eventfd_read|clock_gettime|"
    r"__clock_gettime\w*)$")


def calls(path, callee_pattern=CALLED, by_caller=False):
    """callee (or (caller, callee)) -> calls, for callees the pattern matches, from a file."""
    names, out, caller, callee = {}, {}, None, None
    with open(path, errors="replace") as text:
        for line in text:
            if line.startswith("cfn=") or line.startswith("fn="):
                m = re.match(r"c?fn=\((\d+)\)(?: (.*))?", line.rstrip("\n"))
                if m.group(2):
                    names[m.group(1)] = m.group(2)
                if line.startswith("fn="):
                    caller = names.get(m.group(1))
                else:
                    callee = names.get(m.group(1))
            elif line.startswith("calls=") and callee is not None:
                if callee_pattern.search(callee):
                    key = (caller, callee) if by_caller else callee
                    out[key] = out.get(key, 0) + int(line[6:].split()[0])
                callee = None
    return out


def shorten(name, width=110):
    name = name or "?"
    return (name if len(name) <= width else name[:width - 3] + "...").replace("|", "\\|")


def files(folder, role):
    """The callgrind file of `role` in a kept pass folder."""
    if role in ("broker", "worker", "client") and not folder.name.startswith("baseline-"):
        found = sorted(folder.glob(f"{role}.[0-9]*"))
        if role == "worker":
            # Not the supervisor's; the module probe's is the same in both passes and cancels.
            supervisor = re.search(r"supervisor=(\d+)", (folder / "pids").read_text()).group(1)
            found = [f for f in found if f.name != f"worker.{supervisor}"]
        return found
    pids = (folder / "pids").read_text()
    m = re.search(r"client=(\d+) relay=(\d+) workers=([\d,]+)", pids)
    want = {"client": [m.group(1)], "relay": [m.group(2)], "worker": m.group(3).split(",")}[role]
    return [folder / f"baseline.{p}" for p in want]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("keep", type=pathlib.Path, help="the --keep-callgrind folder")
    ap.add_argument("role", choices=["broker", "relay", "worker", "client"])
    ap.add_argument("--baseline", action="store_true", help="the baseline's worker or client")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--prefix", help="the passes' folder prefix: scale-200- for (j)'s broker "
                    "with 200 workers (default seppo- or baseline-)")
    ap.add_argument("--exclusive", action="store_true", help="self cost instead of inclusive")
    ap.add_argument("--calls", action="store_true",
                    help="calls per task to the ZeroMQ API and to libc's syscall wrappers")
    ap.add_argument("--callers", metavar="REGEX",
                    help="calls per task to functions matching REGEX, by caller (who allocates: "
                    "--callers '^(malloc|operator new)')")
    ap.add_argument("--groups", action="store_true",
                    help="exclusive costs summed by kind (allocation, codec, maps, ...)")
    args = ap.parse_args()

    prefix = args.prefix or ("baseline-" if args.role == "relay" or args.baseline else "seppo-")
    passes = sorted((p for p in args.keep.glob(prefix + "*")
                     if p.is_dir() and re.fullmatch(re.escape(prefix) + r"\d+", p.name)),
                    key=lambda p: int(p.name.rsplit("-", 1)[1]))
    if len(passes) != 2:
        sys.exit(f"profile.py: expected two {prefix}N folders in {args.keep}")
    n = int(passes[1].name.rsplit("-", 1)[1]) - int(passes[0].name.rsplit("-", 1)[1])

    if args.calls or args.callers:
        pattern = re.compile(args.callers) if args.callers else CALLED
        counted = []
        for p in passes:
            merged = {}
            for f in files(p, args.role):
                for k, v in calls(f, pattern, bool(args.callers)).items():
                    merged[k] = merged.get(k, 0) + v
            counted.append(merged)
        print(f"{args.role}: calls per task ({passes[1].name} − {passes[0].name}) / {n}\n")
        print("| calls per task | function |")
        print("|---:|---|")
        names = sorted(set(counted[0]) | set(counted[1]),
                       key=lambda k: -(counted[1].get(k, 0) - counted[0].get(k, 0)))
        for k in names[:args.top]:
            per = (counted[1].get(k, 0) - counted[0].get(k, 0)) / n
            if args.callers:
                k = f"{shorten(k[0])} → {shorten(k[1])}"
            print(f"| {per:.2f} | `{k}` |")
        return

    per_pass = []
    for p in passes:
        merged, total = {}, 0
        for f in files(p, args.role):
            t, tot = costs(f, not (args.exclusive or args.groups))
            total += tot
            for k, v in t.items():
                merged[k] = merged.get(k, 0) + v
        per_pass.append((merged, total))
    (small, small_total), (large, large_total) = per_pass
    per_task_total = (large_total - small_total) / n
    rows = [(k, (large.get(k, 0) - small.get(k, 0)) / n) for k in set(small) | set(large)]
    rows.sort(key=lambda r: -r[1])
    if args.groups:
        sums = {g: 0.0 for g, _ in GROUPS}
        for name, cost in rows:
            group = next(g for g, pattern in GROUPS if re.search(pattern, grouped_name(name)))
            sums[group] += cost
        print(f"{args.role}: {per_task_total:,.0f} instructions per task "
              f"({passes[1].name} − {passes[0].name}) / {n}, by kind (exclusive)\n")
        print("| instructions per task | share | kind |")
        print("|---:|---:|---|")
        for group, cost in sorted(sums.items(), key=lambda g: -g[1]):
            print(f"| {cost:,.0f} | {100 * cost / per_task_total:.1f}% | {group} |")
        return
    kind = "exclusive" if args.exclusive else "inclusive"
    print(f"{args.role}: {per_task_total:,.0f} instructions per task "
          f"({passes[1].name} − {passes[0].name}) / {n}, {kind}\n")
    print(f"| instructions per task ({kind}) | share | function (object) |")
    print("|---:|---:|---|")
    for name, cost in rows[:args.top]:
        short = name if len(name) <= 140 else name[:137] + "..."
        short = short.replace("|", "\\|")
        print(f"| {cost:,.0f} | {100 * cost / per_task_total:.1f}% | `{short}` |")


if __name__ == "__main__":
    main()
