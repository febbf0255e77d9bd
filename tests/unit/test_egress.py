"""Where notifiers and log drains may send: metadata and link-local never, private only for admins."""

from __future__ import annotations

import pytest

from dockyard.policy.egress import EgressRefused, check_url, classify

HTTP = frozenset({"http", "https"})


def fake_resolver(table: dict[str, list[str]]):  # noqa: ANN202
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise EgressRefused(f"host '{host}' cannot be resolved")
        return table[host]
    return resolve


@pytest.mark.parametrize("address,kind", [
    ("169.254.169.254", "forbidden"), ("169.254.1.1", "forbidden"), ("fe80::1", "forbidden"),
    ("0.0.0.0", "forbidden"), ("224.0.0.1", "forbidden"), ("::ffff:169.254.169.254", "forbidden"),
    ("fd00:ec2::254", "forbidden"), ("100.100.100.200", "forbidden"),
    ("127.0.0.1", "private"), ("::1", "private"), ("10.1.2.3", "private"), ("192.168.0.9", "private"),
    ("172.16.5.5", "private"), ("fd12::1", "private"), ("100.64.0.1", "private"),
    ("93.184.216.34", "public"), ("2606:4700::1111", "public"),
])
def test_addresses_are_classified(address: str, kind: str) -> None:
    assert classify(address) == kind


def test_metadata_and_link_local_are_refused_even_for_admins() -> None:
    for url in ("http://169.254.169.254/latest/meta-data/", "http://metadata.google.internal/x",
                "http://[fe80::1]/", "https://[::ffff:169.254.169.254]/"):
        with pytest.raises(EgressRefused, match="metadata|link-local"):
            check_url(url, schemes=HTTP, allow_private=True, resolve=fake_resolver({}))


def test_a_name_resolving_to_metadata_is_refused() -> None:
    r = fake_resolver({"evil.example": ["93.184.216.34", "169.254.169.254"]})
    with pytest.raises(EgressRefused, match="169.254.169.254"):
        check_url("https://evil.example/hook", schemes=HTTP, allow_private=True, resolve=r)


def test_loopback_and_private_need_an_admin() -> None:
    r = fake_resolver({"intranet.corp": ["10.0.0.8"]})
    for url in ("http://127.0.0.1:9000/hook", "http://intranet.corp/hook", "http://[::1]:80/"):
        with pytest.raises(EgressRefused, match="only a platform admin"):
            check_url(url, schemes=HTTP, allow_private=False, resolve=r)
        assert check_url(url, schemes=HTTP, allow_private=True, resolve=r).private


def test_public_hosts_schemes_and_garbage() -> None:
    r = fake_resolver({"hooks.example.com": ["93.184.216.34"]})
    d = check_url("https://hooks.example.com/x?token=1", schemes=HTTP, allow_private=False, resolve=r)
    assert (d.host, d.port, d.private) == ("hooks.example.com", 443, False)
    with pytest.raises(EgressRefused, match="scheme 'file'"):
        check_url("file:///etc/passwd", schemes=HTTP, allow_private=True, resolve=r)
    with pytest.raises(EgressRefused, match="no host"):
        check_url("http:///path", schemes=HTTP, allow_private=True, resolve=r)
    with pytest.raises(EgressRefused, match="not a valid URL"):
        check_url("http://host:99999/", schemes=HTTP, allow_private=True, resolve=r)
    with pytest.raises(EgressRefused, match="cannot be resolved"):
        check_url("https://nowhere.invalid/", schemes=HTTP, allow_private=True, resolve=r)


def test_admission_judges_names_without_looking_them_up() -> None:
    """resolve=None (admission): no DNS query for what a user typed; localhost is loopback by rule."""
    d = check_url("https://hooks.example.com/x", schemes=HTTP, allow_private=False, resolve=None)
    assert (d.addresses, d.private) == ((), False)
    with pytest.raises(EgressRefused, match="only a platform admin"):
        check_url("http://localhost:9000/", schemes=HTTP, allow_private=False, resolve=None)
    with pytest.raises(EgressRefused, match="metadata"):
        check_url("http://metadata.google.internal/", schemes=HTTP, allow_private=True, resolve=None)


def test_admins_names_are_marked_and_others_names_are_left_to_the_sender() -> None:
    from dockyard.admission.egress import admit_destinations
    from dockyard.policy.egress import PRIVATE_ANNOTATION

    spec = {"type": "http", "url": "http://logs.internal.corp/in"}
    assert PRIVATE_ANNOTATION in admit_destinations("LogDrain", spec, {}, is_admin=True)
    assert PRIVATE_ANNOTATION not in admit_destinations("LogDrain", spec, {PRIVATE_ANNOTATION: "true"},
                                                        is_admin=False)
