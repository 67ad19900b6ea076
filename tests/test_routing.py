from adapter.model import Owner, OwnerDirectory
from adapter.routing import InProcessCursor, RoundRobinRouter
from tests.fake_crm import ANA, BEN, GONE, OWNERS, snapshot


def test_round_robin_rotates_through_active_people():
    router = RoundRobinRouter(("ana@example.com", "ben@example.com", "dora@example.com"), None, OWNERS)
    chosen = [router(snapshot(owner=None))[0] for _ in range(4)]
    assert chosen == [ANA.id, BEN.id, ANA.id, BEN.id]


def test_fallback_when_nobody_in_pool_is_active():
    router = RoundRobinRouter(("dora@example.com",), "ben@example.com", OWNERS)
    assert router(snapshot(owner=None)) == (BEN.id, "fallback owner (nobody in the pool is active)")


def test_nobody_to_route_to():
    assert RoundRobinRouter((), None, OWNERS)(snapshot(owner=None)) is None
    assert RoundRobinRouter(("nobody@example.com",), "dora@example.com", OWNERS)(snapshot(owner=None)) is None


def test_cursor_is_shared_between_routers():
    cursor = InProcessCursor()
    pool = ("ana@example.com", "ben@example.com")
    first = RoundRobinRouter(pool, None, OWNERS, cursor)(snapshot(owner=None))[0]
    second = RoundRobinRouter(pool, None, OWNERS, cursor)(snapshot(owner=None))[0]
    assert {first, second} == {ANA.id, BEN.id}


def test_email_lookup_prefers_the_active_duplicate():
    directory = OwnerDirectory([Owner("old", "Ana", "ana@example.com", active=False), Owner("new", "Ana", "ANA@example.com")])
    assert directory.by_email("ana@example.com").id == "new"
    assert GONE.active is False
