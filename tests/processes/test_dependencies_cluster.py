"""Dependencies worked by a real server, on both backends: children start only after their
parents end, never before; children scheduled while their parent finishes (from other
processes) are released all the same, never left waiting."""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from pathlib import Path

from workers_harness import Tree, Workers, wait_for

import kojo


def test_a_server_runs_a_fan_in_after_its_batch_and_a_chain_in_order(tree: Tree) -> None:
    tree.start(max_processes=3)
    batch = tree.app.schedule_many("noop", [{"seconds": 0.05}] * 12)
    callback = tree.app.schedule("noop", after=batch)
    chain = [tree.app.schedule("noop")]
    for _ in range(5):
        chain.append(tree.app.schedule("noop", after=[chain[-1]]))
    everything = [*batch, callback, *chain]
    wait_for(
        lambda: {tree.state(j) for j in everything} == {"complete_success"},
        30.0,
        lambda: f"every job to complete: {Counter(tree.state(j) for j in everything)}",
    )
    starts = {r["id"]: r["t"] for r in tree.records("start")}
    ends = {r["id"]: r["t"] for r in tree.records("end")}
    assert starts[callback] >= max(ends[j] for j in batch)
    for parent, child in itertools.pairwise(chain):
        assert starts[child] >= ends[parent], (parent, child)


def test_children_scheduled_while_their_parent_finishes_are_all_released(
    tree: Tree, workers: Workers, tmp_path: Path
) -> None:
    tree.start(max_processes=2)
    url = tree.url
    for round_ in range(3):
        parent = tree.app.schedule("noop", payload={"seconds": 0.6})
        tree.wait_record("start", parent, 10.0)

        def add_children(n: int, parent: int = parent, round_: int = round_) -> None:
            child_app = kojo.App(database=url)
            ids = []
            # across the parent's end, even where a new connection takes 0.3 s to open
            deadline = time.monotonic() + 1.2
            while time.monotonic() < deadline:
                ids.append(child_app.schedule("noop", after=[parent]))
                time.sleep(0.005)
            (tmp_path / f"children-{round_}-{n}.json").write_text(json.dumps(ids))

        for n in range(3):
            workers.start(lambda n=n: add_children(n))
        workers.join(30.0)
        children = [
            job_id
            for n in range(3)
            for job_id in json.loads((tmp_path / f"children-{round_}-{n}.json").read_text())
        ]
        assert len(children) > 30

        def pairs(children: list[int] = children) -> Counter[tuple[str, str]]:
            rows = [tree.job(j) for j in children]
            return Counter((r["assigned_state"], r["next_state_request"]) for r in rows)

        wait_for(
            lambda pairs=pairs: set(pairs()) == {("complete_success", "none")},
            30.0,
            lambda pairs=pairs, round_=round_: f"round {round_}: every child done: {pairs()}",
        )
        parent_end = tree.wait_record("end", parent, 1.0)[0]["t"]
        starts = [r["t"] for r in tree.records("start") if r["id"] in set(children)]
        assert min(starts) >= parent_end
