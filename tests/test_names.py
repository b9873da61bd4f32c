"""Child names: within 63 characters, valid DNS labels, stable and unique."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from voiceop.render.names import dns_label, media_name

DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
object_names = st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?", fullmatch=True)


def test_short_names_are_kept_as_they_are() -> None:
    assert media_name("billing", "eu-west") == "billing-eu-west"


def test_long_names_are_shortened_with_a_stable_hash() -> None:
    agent = "customer-care-premium-tier-outbound-renewals-campaign-2026"
    name = media_name(agent, "ap-southeast-2")
    assert len(name) <= 63 and DNS_1035.match(name)
    assert name.startswith("customer-care-premium-tier-outbound-renewals-campaign-")
    assert name == media_name(agent, "ap-southeast-2")
    assert name != media_name(agent, "ap-southeast-1")


def test_names_that_are_not_dns_labels_are_made_into_one() -> None:
    assert DNS_1035.match(media_name("0-agent", "eu"))
    assert DNS_1035.match(media_name("billing.v2", "eu"))


@given(object_names, object_names)
def test_every_media_name_is_a_dns_label(agent: str, region: str) -> None:
    name = media_name(agent, region)
    assert len(name) <= 63 and DNS_1035.match(name)


@given(st.lists(st.tuples(object_names, object_names), min_size=2, max_size=20, unique=True))
def test_shortened_names_never_collide(pairs: list[tuple[str, str]]) -> None:
    shortened = {pair: dns_label(*pair) for pair in pairs if dns_label(*pair) != "-".join(pair)}
    assert len(set(shortened.values())) == len(shortened)
