"""An A/B test end to end (issue 18's acceptance): two versions published by real nightly runs,
an experiment at 50/50, simulated users asking a real `recsys serve` over HTTP and clicking
and buying through /events, and `recsys experiment report` naming the better arm from the
drained impressions and events. Real Redis, real Beam (DirectRunner), real HTTP.

The simulated users want half of the catalogue (`wanted`, chosen at random and known to no
model): they click a shown item they want with probability 0.4, any other with 0.02, and buy
half of the wanted items they click. Version 2's lists put the wanted items first, version 1's
put them last, so the treatment (version 2) is the better arm by construction.
"""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from app.cli import main
from batch.nightly import run
from infra.bundle import read_bundle
from infra.redis.codec import decode_list, encode_list
from infra.redis.lists import ServedLists
from infra.store import open_store
from tests.app.http_json import get_json as _get
from tests.app.http_json import post_json as _post
from tests.conftest import recsys_serve

REQUESTS_PER_USER = 5


def _rank_wanted(client, store: str, version: str, wanted: set, first: bool) -> int:
    """Rewrites every list of `version` with the wanted items first (or last), otherwise in
    its order; returns the lists rewritten."""
    names = read_bundle(open_store(store), version, with_users=False).item_ids.tolist()
    keys = list(client.scan_iter(f"recsys:v:{version}:u:*"))
    for key in keys:
        items, scores = decode_list(client.get(key))
        late = np.array([(names[i] in wanted) != first for i in items])
        order = np.argsort(late, kind="stable")
        client.set(key, encode_list(items[order], scores[order]))
    return len(keys)


def _cli(args: list[str], env: dict) -> str:
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.slow
def test_an_ab_test_over_http_names_the_better_arm(tmp_path, redis_url, redis_client,
                                                   tiny_dataset):
    path = tmp_path / "interactions.parquet"
    tiny_dataset.interactions.to_parquet(path)
    store = str(tmp_path / "store")
    argv = [f"--input={path}", f"--store={store}", f"--redis_url={redis_url}", "--model=mf",
            "--epochs=1", "--dim=4", "--k=10", "--skip_gate", "--runner=FnApiRunner",
            "--direct_running_mode=in_memory"]
    env = {"REDIS_URL": redis_url, "RECSYS_STORE": store, "RECSYS_NAMESPACE": "recsys",
           "RECSYS_POINTER_TTL_S": "0", "RECSYS_RECOMMEND_KEY": None, "RECSYS_API_KEY": None}
    v1, v2 = run(argv)["version"], run(argv)["version"]
    lists = ServedLists(redis_client)
    lists.rollback(v1)  # v1 is served; v2 is published beside it
    rng = np.random.default_rng(18)
    items = sorted({str(i) for i in tiny_dataset.interactions["item_id"]})
    wanted = {str(i) for i in rng.choice(items, len(items) // 2, replace=False)}
    assert _rank_wanted(redis_client, store, v2, wanted, first=True) > 100
    assert _rank_wanted(redis_client, store, v1, wanted, first=False) > 100

    _cli(["experiment", "create", "ab", "--arm", "control=current:5000",
          "--arm", f"treatment={v2}:5000"], env)
    _cli(["experiment", "start", "ab"], env)
    users = sorted({str(u) for u in tiny_dataset.interactions["user_id"]})
    arms, events = {}, []
    with recsys_serve({**env, "WORKERS": "2", "THREADS": "2"}, tmp_path / "serve.log") as (
            url, _):
        for u in users:
            for _ in range(REQUESTS_PER_USER):
                answer = _get(f"{url}/recommend?user_id={u}&k=5")
                arms.setdefault(answer["arm"], set()).add(answer["model_version"])
                rid = answer["recommendation_id"]
                for item in (i["item_id"] for i in answer["items"]):
                    if rng.random() >= (0.4 if item in wanted else 0.02):
                        continue
                    events.append({"user_id": u, "item_id": item, "event_type": "click",
                                   "event_id": f"c-{rid}-{item}", "recommendation_id": rid})
                    if item in wanted and rng.random() < 0.5:
                        events.append({"user_id": u, "item_id": item, "event_type": "purchase",
                                       "value": float(rng.integers(5, 50)),
                                       "event_id": f"p-{rid}-{item}",
                                       "recommendation_id": rid})
        for lo in range(0, len(events), 500):
            stored = _post(f"{url}/events", {"events": events[lo:lo + 500]})
            assert stored["rejected"] == [] and stored["stored"] == len(events[lo:lo + 500])
    assert arms == {"control": {v1}, "treatment": {v2}}  # each arm served its own version

    out = tmp_path / "report.json"
    text = _cli(["experiment", "report", "ab", "--store", store, "--json", str(out),
                 "--plot", str(tmp_path / "ctr.png"), "--min-lift", "0.5"], env)
    report = json.loads(out.read_text())
    assert report["winner"] == "treatment", text
    assert "treatment" in report["verdict"]
    control, treatment = report["arms"]["control"], report["arms"]["treatment"]
    assert control["users"] + treatment["users"] == len(users)
    assert control["impressions"] + treatment["impressions"] == len(users) * REQUESTS_PER_USER
    assert treatment["ctr"] > control["ctr"] and treatment["value_per_user"] > 0
    assert not report["srm"]["flagged"]
    assert all(report["guardrails"][arm]["ok"] for arm in ("control", "treatment"))
    assert (tmp_path / "ctr.png").stat().st_size > 10_000
