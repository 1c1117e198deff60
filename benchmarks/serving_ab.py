"""A/B of the serving code itself: `recsys serve` of an older checkout against this one (and
the bare function), in alternating wrk rounds over one bundle, one Redis and one machine.

    git worktree add /tmp/old <commit> --detach
    python -m benchmarks.serving_ab --old /tmp/old [--users 100000] [--path recommend|similar]
        [--rounds 5] [--json F]

benchmarks/serving.py compares the cached path with bare in one run; between two runs the
machine alone moves every figure by 10-15%, so a change to the serving code is judged here,
where both versions run side by side: each `recsys serve` starts in its own checkout (the
package imported from that folder), under the same gunicorn settings, and the rounds
alternate bare, old, new (reversed every other round; a round whose connections landed
unevenly on the workers is run again, as in benchmarks/serving.py). Prints each server's
median req/s and server CPU per request, and req/s over bare.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shlex
import statistics
import sys
import tempfile
import types

from benchmarks import serving as sv
from benchmarks.serving_load import run_wrk, settled_round, start_server, write_ids

log = logging.getLogger("benchmarks.serving_ab")
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _serve(tree: str) -> list[str]:
    """`recsys serve` run from `tree` (python -m puts the working folder first on the path)."""
    return ["/bin/sh", "-c", f"cd {shlex.quote(tree)} && exec {shlex.quote(sys.executable)} "
            '-m app.cli serve "$@"', "serve"]


def run(args) -> dict:
    """The A/B's figures: {"settings", "servers": {name: medians and rounds}, "over_bare"}."""
    from infra.redis.lists import ServedLists
    from infra.redis_server import free_port, local_redis

    work = tempfile.mkdtemp(prefix="recsys-ab-")
    with local_redis() as url:
        built = types.SimpleNamespace(users=args.users, items=args.items, seed=0,
                                      fresh_users=10, served_store="")
        folder, _, warm, _ = sv.prepare("mf", built, url, work)
        items = sv.serving_similar.publish_similar(url, folder, sv.VERSION, sv.NS)
        ids = write_ids(os.path.join(work, "users.txt"), warm)
        item_ids = write_ids(os.path.join(work, "items.txt"), [str(i) for i in items])
        env = {"REDIS_URL": url, "RECSYS_STORE": folder, "RECSYS_NAMESPACE": sv.NS,
               "WORKERS": str(args.workers), "THREADS": str(args.threads),
               "RECSYS_BARE_PREFIX": f"{sv.NS}:v:{sv.VERSION}:u:"}
        lists = ServedLists.from_url(url, sv.NS)
        bare = [sys.executable, "-m", "functions_framework", "--source", sv.BARE_SOURCE,
                "--target", "bare", "--host", "127.0.0.1"]
        path, picks = (("/recommend?k=10&user_id=", ids) if args.path == "recommend"
                       else ("/similar?k=10&item_id=", item_ids))
        with contextlib.ExitStack() as stack:
            targets = {}
            base, _, pid = stack.enter_context(start_server(
                bare, env, free_port(), f"/?user_id={warm[0]}", os.path.join(work, "bare.log")))
            targets["bare"] = (base + "/?user_id=", pid, ids)
            for name, tree in (("old", args.old), ("new", HERE)):
                base, _, pid = stack.enter_context(start_server(
                    _serve(tree), env, free_port(), "/recommend?user_id=f0&k=10",
                    os.path.join(work, f"{name}.log")))
                targets[name] = (base + path, pid, picks)
            for prefix, _, f in targets.values():  # warm-up, not recorded
                run_wrk(prefix, f, 2, args.connections, work)
            rounds: dict[str, list[dict]] = {name: [] for name in targets}
            names = list(targets)
            for r in range(args.rounds):
                for name in names if r % 2 == 0 else names[::-1]:
                    prefix, pid, f = targets[name]
                    got, _, _ = settled_round(
                        prefix, f, args, work, pid, r, sv.SETTLE_S, f"round {r} {name}",
                        lambda: lists.r.delete(f"{sv.NS}:impressions"))  # nothing drains it
                    rounds[name].append({k: v for k, v in got.items() if k != "percentiles"})
    servers = {name: {key: round(statistics.median(x[key] for x in rs), 1)
                      for key in ("rps", "p99_ms", "server_cpu_us")} | {"rounds": rs}
               for name, rs in rounds.items()}
    bare_rps = servers["bare"]["rps"]
    return {"settings": {k: v for k, v in vars(args).items() if k != "json"},
            "servers": servers,
            "over_bare": {n: round(servers[n]["rps"] / bare_rps, 3) for n in ("old", "new")}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", required=True, help="a checkout of the older commit")
    parser.add_argument("--path", choices=("recommend", "similar"), default="recommend")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk round")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--retries", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if not os.path.isfile(os.path.join(args.old, "app", "cli.py")):
        parser.error(f"--old {args.old!r} is not a checkout of this project (no app/cli.py)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    out = run(args)
    for name, s in out["servers"].items():
        print(f"{name:4s} req/s {s['rps']:8.1f}  server CPU us/request {s['server_cpu_us']:6.1f}"
              f"  p99 ms {s['p99_ms']:6.2f}")
    print(f"{args.path}: old/bare req/s {out['over_bare']['old']}, "
          f"new/bare req/s {out['over_bare']['new']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
