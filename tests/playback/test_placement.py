"""Placement (playback/placement.py): small cases checked by hand."""

from __future__ import annotations

import pytest

from reelflow.playback.placement import (
    Edge,
    Forecast,
    Placed,
    Play,
    Title,
    edge_plays,
    forecast,
    place,
    reach_curve,
)

DAY = 86_400.0
GB = 1 << 30


def _fc(entries: dict[str, dict[tuple[str, str | None], float]]) -> Forecast:
    fc = Forecast()
    for title, groups in entries.items():
        for group, plays in groups.items():
            fc.add(title, group, plays)
    return fc


def test_budget_is_respected_and_the_ratio_decides() -> None:
    titles = [Title("a", {"hd": 4 * GB}), Title("b", {"hd": 3 * GB}), Title("c", {"hd": 2 * GB}),
              Title("d", {"hd": 1 * GB})]
    # ratio = plays x watched_share: b (9) > a (8) > d (3) > c (2)
    fc = _fc({"a": {("fr", None): 16}, "b": {("fr", None): 18}, "c": {("fr", None): 4}, "d": {("fr", None): 6}})
    edge = Edge("e1", 6 * GB, "fr")
    chosen = place(titles, [edge], fc, now=0.0, lead_s=0.0)["e1"]
    # b (3 GB) first; a (4 GB) does not fit in the 3 GB left; d (1 GB) then c (2 GB) do
    assert sorted(p.key for p in chosen) == ["b", "c", "d"]
    assert sum(p.bytes for p in chosen) <= edge.budget_bytes
    assert next(p for p in chosen if p.key == "b").ratio == pytest.approx(9.0)


def test_a_title_not_available_in_a_country_is_never_placed_there() -> None:
    titles = [Title("local", {"hd": GB}, countries=frozenset({"de"})), Title("world", {"hd": GB})]
    fc = _fc({"local": {("de", None): 100, ("fr", None): 100}, "world": {("fr", None): 1, ("de", None): 1}})
    edges = [Edge("de1", 10 * GB, "de"), Edge("fr1", 10 * GB, "fr")]
    result = place(titles, edges, fc, now=0.0, lead_s=0.0)
    assert {p.key for p in result["de1"]} == {"local", "world"}
    assert {p.key for p in result["fr1"]} == {"world"}


def test_unreleased_title_is_placed_before_release_only_within_the_lead_and_first() -> None:
    now = 100 * DAY
    soon = Title("soon", {"hd": GB}, release_at=now + 0.5 * DAY)
    later = Title("later", {"hd": GB}, release_at=now + 5 * DAY)
    old = Title("old", {"hd": GB}, release_at=now - 300 * DAY)
    plays = [Play("old", now - 3600 * i, "fr", "isp1") for i in range(1, 5)]
    fc = forecast(plays, [soon, later, old], now=now, window_s=DAY, half_life_s=DAY,
                  new_release_plays=50, new_release_s=7 * DAY)
    # no history for the new titles: the prior, undecayed until release
    assert sum(fc.plays["soon"].values()) == pytest.approx(50)
    result = place([soon, later, old], [Edge("e", 10 * GB, "fr", "isp1")], fc, now=now, lead_s=DAY)
    keys = [p.key for p in result["e"]]
    assert keys == ["soon", "old"]                 # later is 5 days away; the newest release fills first


def test_forecast_counts_a_steady_rate_as_plays_per_window() -> None:
    # one play an hour for 30 days, forecast per day, half-life one day: about 24
    plays = [Play("t", DAY * 30 - 3600 * i, "fr", "x") for i in range(30 * 24)]
    fc = forecast(plays, [Title("t", {"hd": GB})], now=30 * DAY, window_s=DAY, half_life_s=DAY,
                  new_release_plays=0, new_release_s=0)
    assert fc.plays["t"][("fr", "x")] == pytest.approx(24, rel=0.05)


def test_isp_demand_goes_to_that_isp_edges_and_only_used_rungs_are_stored() -> None:
    fc = _fc({"t": {("fr", "orange"): 10, ("fr", "free"): 4}})
    edges = [Edge("o1", GB, "fr", "orange"), Edge("o2", GB, "fr", "orange"),
             Edge("f1", GB, "fr", "free", rungs=frozenset({"sd"}))]
    served = edge_plays(fc, edges)
    assert served["o1"]["t"] == pytest.approx(5) and served["f1"]["t"] == pytest.approx(4)
    title = Title("t", {"": 10, "sd": 100, "hd": 400})
    result = place([title], edges, fc, now=0.0, lead_s=0.0)
    assert result["f1"][0].rungs == ("", "sd") and result["f1"][0].bytes == 110
    assert result["o1"][0].bytes == 510


def test_long_tail_below_min_plays_is_left_upstream() -> None:
    fc = _fc({"hit": {("fr", None): 50}, "tail": {("fr", None): 0.2}})
    titles = [Title("hit", {"hd": GB}), Title("tail", {"hd": GB})]
    result = place(titles, [Edge("e", 10 * GB, "fr")], fc, now=0.0, lead_s=0.0, min_plays=1.0)
    assert [p.key for p in result["e"]] == ["hit"]


def test_reach_curve_counts_the_plays_that_reach_each_part() -> None:
    # four plays: 5%, 30%, 60% and all of the title, in four parts (starts at 0, 25, 50, 75%)
    assert reach_curve([0.05, 0.3, 0.6, 1.0], 4) == (1.0, 0.75, 0.5, 0.25)
    assert reach_curve([], 3) == (1.0, 1.0, 1.0)


def test_prefixes_of_more_titles_beat_fewer_whole_titles() -> None:
    # four 4 GB titles in 4 parts; half the plays stop after the first part: the first parts are worth the most
    titles = [Title(k, {"hd": 4 * GB}) for k in "abcd"]
    fc = _fc({"a": {("fr", None): 40}, "b": {("fr", None): 30}, "c": {("fr", None): 20}, "d": {("fr", None): 10}})
    reach = (1.0, 0.5, 0.5, 0.5)
    chosen = place(titles, [Edge("e", 6 * GB, "fr")], fc, now=0.0, lead_s=0.0, parts=4, reach=reach)["e"]
    held = {p.key: p.parts for p in chosen}
    # worth per GB-part: a 40, b 30, a2-4 20, c 20, b2-4 15, d 10: a whole (4), then the first parts of b and c
    assert held == {"a": 4, "b": 1, "c": 1}
    assert all(p.of_parts == 4 for p in chosen) and sum(p.bytes for p in chosen) == 6 * GB
    whole = place(titles, [Edge("e", 6 * GB, "fr")], fc, now=0.0, lead_s=0.0)["e"]
    assert [p.key for p in whole] == ["a"]                 # whole titles: only one fits


def test_parts_are_held_only_after_the_parts_before_them() -> None:
    # the first part of "big" does not fit; its later (smaller share) parts are never taken alone
    titles = [Title("big", {"hd": 8 * GB}), Title("small", {"hd": GB})]
    fc = _fc({"big": {("fr", None): 100}, "small": {("fr", None): 1}})
    chosen = place(titles, [Edge("e", int(1.5 * GB), "fr")], fc, now=0.0, lead_s=0.0, parts=4,
                   reach=(1.0, 1.0, 1.0, 1.0))["e"]
    assert [(p.key, p.parts) for p in chosen] == [("small", 4)]


def test_edges_of_one_isp_pool_their_budgets() -> None:
    # three edges of one ISP, 2 GB each: the head (a) on each in half the budget, then b, c, d once each
    titles = [Title(k, {"hd": GB}) for k in "abcdefg"]
    fc = _fc({k: {("fr", "acme"): float(100 - i)} for i, k in enumerate("abcdefg")})
    edges = [Edge(f"e{i}", 2 * GB, "fr", "acme") for i in range(3)]
    result = place(titles, edges, fc, now=0.0, lead_s=0.0, replicate_share=0.5)
    held = {name: sorted(p.key for p in placed) for name, placed in result.items()}
    assert all("a" in keys for keys in held.values())
    rest = sorted(k for keys in held.values() for k in keys if k != "a")
    assert rest == ["b", "c", "d"]                          # each once: the ISP holds 4 titles, not 2
    assert all(sum(p.bytes for p in result[e.name]) <= e.budget_bytes for e in edges)
    holder = next(p for placed in result.values() for p in placed if p.key == "b")
    assert holder.plays == pytest.approx(99)                # the one holder serves the ISP's plays of b
    alone = place(titles, edges, fc, now=0.0, lead_s=0.0)   # no pooling: every edge holds the same two
    assert all(sorted(p.key for p in placed) == ["a", "b"] for placed in alone.values())


def test_a_pooled_title_stays_on_its_edge_from_one_fill_to_the_next() -> None:
    # 4 edges of 6 GB: the head (3 titles) on each, 12 more titles once; tomorrow "new" enters at the top
    titles = [Title(f"t{i:02}", {"hd": GB}) for i in range(30)] + [Title("new", {"hd": GB})]
    edges = [Edge(f"e{i}", 6 * GB, "fr", "acme") for i in range(4)]
    today = {f"t{i:02}": {("fr", "acme"): 100.0 - i} for i in range(30)}
    before = place(titles, edges, _fc(today), now=0.0, lead_s=0.0, replicate_share=0.5)
    after = place(titles, edges, _fc({**today, "new": {("fr", "acme"): 500.0}}), now=0.0, lead_s=0.0,
                  replicate_share=0.5)

    def holders(result: dict[str, list[Placed]]) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for name, placed in result.items():
            for p in placed:
                out.setdefault(p.key, set()).add(name)
        return out

    was, now = holders(before), holders(after)
    pooled = {k for k, where in was.items() if len(where) == 1} & {k for k, where in now.items() if len(where) == 1}
    assert len(pooled) >= 8
    moved = [k for k in pooled if was[k] != now[k]]
    assert len(moved) <= 2, moved                       # "new" pushes one title per edge out, not a reshuffle
    assert {len(where) for where in was.values()} == {1, 4}
    assert len({name for k in pooled for name in was[k]}) == 4      # the pool spreads over every edge
