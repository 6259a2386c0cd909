"""--shard I/K: K processes over one endpoints file run every selected case once, and ping and provision it once."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest

from model_monitor.shard import Shard, parse, shard_of
from testbed.openai_server import FakeOpenAI
from testbed.receiver import Receiver

from .helpers import endpoint, model

KEY = "cronitorkey0123456789"
K = 3
MODELS = [f"m{i}" for i in range(6)]
CASES = {f"{name}/{m}" for name in ("a", "b") for m in MODELS}


# --- the partition (pure logic) ---


@pytest.mark.parametrize(("text", "shard"), [("0/1", Shard(0, 1)), ("2/3", Shard(2, 3)), (" 0/4 ", Shard(0, 4))])
def test_a_shard_is_i_of_k(text: str, shard: Shard) -> None:
    assert parse(text) == shard and str(shard) == text.strip()


@pytest.mark.parametrize("text", ["3/3", "1/0", "0/0", "-1/2", "1", "a/b", "1/2/3", ""])
def test_a_malformed_shard_says_the_shape(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected I/K with 0 <= I < K"):
        parse(text)


def test_shards_partition_any_set_of_ids_and_adding_one_moves_only_it() -> None:
    ids = [f"gateway-{i % 50}/org/model-{i}" for i in range(5000)]
    for count in (1, 2, 4, 7):
        shares = [{i for i in ids if Shard(index, count).owns(i)} for index in range(count)]
        assert sum(len(s) for s in shares) == len(ids) and set().union(*shares) == set(ids)
    before = {i: shard_of(i, 4) for i in ids}
    after = {i: shard_of(i, 4) for i in [*reversed(ids), "gateway-0/new-model"]}
    assert {i: after[i] for i in ids} == before, "a case's shard depends on its id alone"


def test_shards_are_as_balanced_as_a_fair_random_split_for_5000_ids() -> None:
    """A hash spreads like a fair die: each share is within 4 standard deviations of n/K (a binomial's)."""
    ids = [f"gateway-{i % 50}/org/model-{i}" for i in range(5000)]
    for count in (2, 4, 8):
        sizes = Counter(shard_of(i, count) for i in ids)
        mean, sigma = len(ids) / count, math.sqrt(len(ids) * (1 / count) * (1 - 1 / count))
        spread = max(abs(size - mean) for size in sizes.values())
        print(f"K={count}: shard sizes {sorted(sizes.values())}, largest {spread / mean:.1%} from n/K")  # README
        assert len(sizes) == count and spread <= 4 * sigma


# --- K processes over one file ---


def run_shards(run_monitor, server: FakeOpenAI, *args: str) -> list[set[str]]:
    """Run the K shards one after another; each one's JUnit cases (asserting each run passed)."""
    endpoints = {"endpoints": [endpoint(server.url, *map(model, MODELS), name=name) for name in ("a", "b")]}
    shares = []
    for index in range(K):
        run = run_monitor(endpoints, f"--shard={index}/{K}", *args)
        assert run.ret == 0, run.output
        run.result.stdout.fnmatch_lines([f"model-monitor: shard {index}/{K}: * of the cases run here*"])
        shares.append(set(run.cases))
    return shares


def test_k_shards_run_ping_and_provision_every_case_exactly_once(
    server: FakeOpenAI, receiver: Receiver, run_monitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRONITOR_URL", f"{receiver.url}/p/{KEY}")
    monkeypatch.setenv("CRONITOR_API_KEY", "cronitorapikey987654321")
    monkeypatch.setenv("CRONITOR_API_URL", f"{receiver.url}/api")
    shares = run_shards(run_monitor, server, "-n", "2")  # xdist's workers inside a shard split only its share
    assert all(shares) and sum(len(s) for s in shares) == len(CASES) and set().union(*shares) == CASES
    assert Counter(r.model for r in server.requests) == Counter(MODELS * 2), "every model probed once per endpoint"
    pings = Counter((p.path.rsplit("/", 1)[1], p.query["state"][0]) for p in receiver.pings if p.path.startswith("/p/"))
    monitors = {case.replace("/", "-") for case in CASES}
    assert pings == Counter({(m, state): 1 for m in monitors for state in ("run", "complete")})
    provisioned = [m["key"] for put in receiver.pings_for("/api/monitors") for m in json.loads(put.body)["monitors"]]
    assert sorted(provisioned) == sorted(monitors), "each shard provisions its own cases"


def test_the_shares_of_a_selection_partition_the_selection(server: FakeOpenAI, run_monitor) -> None:
    shares = run_shards(run_monitor, server, "--only", "a", "-k", "not m3")
    selection = {f"a/{m}" for m in MODELS if m != "m3"}
    assert sum(len(s) for s in shares) == len(selection) and set().union(*shares) == selection
    assert Counter(r.model for r in server.requests) == Counter(m for m in MODELS if m != "m3")


@pytest.mark.parametrize(("flag", "env"), [(["--shard=3/3"], None), ([], "1/0")], ids=["flag", "env"])
def test_a_bad_shard_is_a_one_line_usage_error(
    openai_server: FakeOpenAI, run_monitor, monkeypatch: pytest.MonkeyPatch, flag: list[str], env: str | None
) -> None:
    if env is not None:
        monkeypatch.setenv("MODEL_MONITOR_SHARD", env)
    run = run_monitor({"endpoints": [endpoint(openai_server.url, model("m0"))]}, *flag)
    assert run.ret == 4
    source = "--shard" if flag else "environment variable MODEL_MONITOR_SHARD"
    errors = [line for line in run.result.stderr.lines if "ERROR" in line]
    assert errors == [
        f"ERROR: {source}: invalid value {(env or '3/3')!r}: expected I/K with 0 <= I < K, e.g. 0/3 for the first of 3 shards"
    ]


def test_a_shard_whose_share_is_empty_passes_and_says_so(server: FakeOpenAI, run_monitor) -> None:
    """One case over three shards: two of them hold nothing, which is their whole job done, not pytest's exit 5
    (that would fail their index of the Indexed Job); a selection that is empty everywhere still exits 5."""
    file = {"endpoints": [endpoint(server.url, model("only-one"))]}
    owner = next(i for i in range(K) if Shard(i, K).owns("svc/only-one"))
    for index in range(K):
        run = run_monitor(file, f"--shard={index}/{K}")
        if index == owner:
            assert run.ret == 0 and run.cases["svc/only-one"]["model_monitor.verdict"] == "pass", run.output
        else:
            assert run.ret == 0, run.output
            run.result.stdout.fnmatch_lines([f"model-monitor: shard {index}/{K} holds none of the selected cases *"])
    assert run_monitor(file, f"--shard={owner}/{K}", "-k", "no-such-case").ret == 5
    assert len(server.requests) == 1
