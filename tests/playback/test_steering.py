"""steering: properties of the ranking over any set of edges (hypothesis), and a worked example."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from reelflow.infra.settings import EdgeConfig
from reelflow.playback.steering import ORIGIN, EdgeRegistry, EdgeReport, rank_edges

ISPS = st.sampled_from([None, "acme", "ACME ", "globex", "initech"])
REGIONS = st.sampled_from([None, "US", "us", "FR", "DE"])
TITLES = st.one_of(st.none(), st.lists(st.sampled_from(["t1", "t2", "t3"]), max_size=3).map(tuple))

edge_lists = st.lists(
    st.builds(EdgeConfig, name=st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True),
              base_url=st.sampled_from(["http://a.example", "http://b.example:8080", "https://c.example/cdn"]),
              isp=ISPS, region=REGIONS, healthy=st.booleans(),
              load=st.floats(min_value=0, max_value=2, allow_nan=False), titles=TITLES),
    max_size=8, unique_by=lambda e: e.name)


def same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.strip().casefold() == b.strip().casefold()


@given(edge_lists, ISPS, REGIONS, st.sampled_from(["t1", "t2", "t9"]))
def test_ranking_properties(edges: list[EdgeConfig], isp: str | None, country: str | None, title: str) -> None:
    ranked = rank_edges(edges, title_id=title, isp=isp, country=country, origin_url="http://origin:8700/")
    by_name = {e.name: e for e in edges}
    # the origin is always there, once, last, without a trailing slash
    assert ranked[-1].name == ORIGIN and ranked[-1].base_url == "http://origin:8700"
    assert [c.name for c in ranked].count(ORIGIN) == 1
    chosen = [by_name[c.name] for c in ranked[:-1]]
    # every healthy edge, and no unhealthy one
    assert {e.name for e in chosen} == {e.name for e in edges if e.healthy}
    # same ISP first; within it, edges holding the title first; then region; then load
    keys = [(not same(e.isp, isp), not (e.titles is None or title in e.titles), not same(e.region, country), e.load)
            for e in chosen]
    assert keys == sorted(keys)
    # the input's order does not matter
    again = rank_edges(list(reversed(edges)), title_id=title, isp=isp, country=country, origin_url="http://origin:8700")
    assert [c.name for c in again] == [c.name for c in ranked]


def test_worked_example() -> None:
    edges = [
        EdgeConfig(name="busy-isp", base_url="http://1", isp="acme", load=0.9),
        EdgeConfig(name="idle-isp-no-title", base_url="http://2", isp="acme", load=0.1, titles=("other",)),
        EdgeConfig(name="idle-isp", base_url="http://3", isp="acme", load=0.2),
        EdgeConfig(name="transit", base_url="http://4", isp="globex", load=0.0),
        EdgeConfig(name="down", base_url="http://5", isp="acme", healthy=False),
    ]
    ranked = rank_edges(edges, title_id="film", isp="Acme", country="US", origin_url="http://o")
    assert [c.name for c in ranked] == ["idle-isp", "busy-isp", "idle-isp-no-title", "transit", "origin"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_heartbeats_rank_and_a_silent_edge_is_down_after_its_missed_beats() -> None:
    clock = FakeClock()
    registry = EdgeRegistry(missed_beats=1.5, clock=clock)
    assert not registry.reporting and registry.candidates() == []
    registry.beat(EdgeReport("busy", "http://1", isp="acme", load=0.8, heartbeat_s=2, holdings={"film/v1": (3, 9)}))
    registry.beat(EdgeReport("idle", "http://2", isp="acme", load=0.1, heartbeat_s=2, holdings={"film/v1": (1, 3)}))
    registry.beat(EdgeReport("empty", "http://3", isp="acme", load=0.0, heartbeat_s=2))
    registry.beat(EdgeReport("hub", "http://4", isp="acme", serves_players=False, heartbeat_s=2,
                             holdings={"film/v1": (9, 99)}))
    rank = lambda: [c.name for c in rank_edges(registry.candidates(), title_id="film", isp="acme",  # noqa: E731
                                               country="US", origin_url="http://o")]
    assert rank() == ["idle", "busy", "empty", ORIGIN]      # holding the title, then least loaded; no hub
    clock.now += 2.9                                          # one interval and most of the margin: still up
    registry.beat(EdgeReport("busy", "http://1", isp="acme", load=0.8, heartbeat_s=2, holdings={"film/v1": (3, 9)}))
    registry.beat(EdgeReport("empty", "http://3", isp="acme", load=0.0, heartbeat_s=2))
    assert rank() == ["idle", "busy", "empty", ORIGIN]
    clock.now += 0.2                                          # idle's last beat is now 3.1 s > 1.5 x 2 s old
    assert rank() == ["busy", "empty", ORIGIN]
    assert {e["name"]: e["up"] for e in registry.status()} == {"busy": True, "idle": False, "empty": True,
                                                               "hub": False}
    registry.beat(EdgeReport("idle", "http://2", isp="acme", load=0.1, heartbeat_s=2, holdings={"film/v1": (1, 3)}))
    assert rank()[0] == "idle"                                # back with its next heartbeat


def test_the_edge_the_fill_placed_a_title_on_comes_before_one_that_only_cached_some_of_it() -> None:
    # an ISP's edges pool their budgets: "film" is pinned on "holder" only; "cacher" kept a few of its
    # segments from earlier plays and is idler; "head" titles are pinned on both, and load decides
    registry = EdgeRegistry()
    registry.beat(EdgeReport("holder", "http://1", isp="acme", load=0.7, holdings={"film/v1": (40, 400),
                                                                                   "head/v1": (90, 900)},
                             placed=frozenset({"film/v1", "head/v1"})))
    registry.beat(EdgeReport("cacher", "http://2", isp="acme", load=0.1, holdings={"film/v1": (2, 20),
                                                                                   "head/v1": (90, 900)},
                             placed=frozenset({"head/v1"})))
    registry.beat(EdgeReport("elsewhere", "http://3", isp="globex", load=0.0, placed=frozenset({"film/v1"}),
                             holdings={"film/v1": (40, 400)}))

    def rank(title: str) -> list[str]:
        return [c.name for c in rank_edges(registry.candidates(), title_id=title, isp="acme", country="US",
                                           origin_url="http://o")]

    assert rank("film") == ["holder", "cacher", "elsewhere", ORIGIN]
    assert rank("head") == ["cacher", "holder", "elsewhere", ORIGIN]
